#!/bin/sh
# bench-policy.sh: the indexed policy Set against plain cedar-go (a full scan
# of the policy set), side by side in one run, on the same policies, principal
# and requests; prints ns/op, allocs, per-decision p50/p99 and the speed-up.
#
#   scripts/bench-policy.sh            # default -benchtime 1s, -count 1
#   BENCHTIME=3s COUNT=3 scripts/bench-policy.sh
set -eu
cd "$(dirname "$0")/.."
out=$(go test -run '^$' -bench 'Authorize|FilterTools' -benchmem \
	-benchtime "${BENCHTIME:-1s}" -count "${COUNT:-1}" ./identity/policy/)
echo "$out" | grep -E '^(goos|goarch|cpu|Benchmark)'
echo
echo "$out" | awk '
/^BenchmarkAuthorize\/(indexed|cedar)\// {
	split($1, f, "/"); mode = f[2]; n = f[3]; sub(/-[0-9]+$/, "", n)
	ns[mode "/" n] += $3; cnt[mode "/" n]++
}
/^BenchmarkAuthorizeLatency\/(indexed|cedar)\// {
	split($1, f, "/"); mode = f[2]; n = f[3]; sub(/-[0-9]+$/, "", n)
	for (i = 4; i < NF; i++) if ($(i+1) == "p50-ns") p50[mode "/" n] = $i
}
/^BenchmarkFilterTools/ { filter = $3 }
END {
	for (n = 50; n <= 1000; n += 950) {
		i = ns["indexed/" n] / cnt["indexed/" n]; c = ns["cedar/" n] / cnt["cedar/" n]
		printf "%4d policies: indexed %8.0f ns/op (p50 %5.0f ns), cedar-go %9.0f ns/op (p50 %7.0f ns): %5.1fx faster\n", n, i, p50["indexed/" n], c, p50["cedar/" n], c / i
	}
	printf "filtering a 1,000-tool list against 1,000 policies: %.2f ms\n", filter / 1e6
}'
