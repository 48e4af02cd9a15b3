#!/usr/bin/env bash
# Identity benchmarks, side by side with the anchor (bare x509 Verify on the
# same root -> intermediate -> leaf chain). Goals (issue 3):
#   identity parse from a parsed certificate   <= 2 us
#   cached verification                         <= 2 us
#   uncached verification / bare x509 Verify    <= 1.15 (the "ratio" column)
set -euo pipefail
cd "$(dirname "$0")/.."
go test -run '^$' -bench 'FromCertificate|Verify' -benchtime "${BENCHTIME:-2s}" -count "${COUNT:-1}" ./identity/
