package ca

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// MinPasswordLength is the fewest characters CheckPassword accepts.
const MinPasswordLength = 12

// minDistinctChars is the fewest different characters CheckPassword accepts.
const minDistinctChars = 6

// commonPasswords are frequent passwords of MinPasswordLength characters or
// more (shorter ones fail the length rule), compared case-insensitively.
var commonPasswords = map[string]bool{
	"password1234": true, "password12345": true, "password123456": true, "passwordpassword": true,
	"passw0rd1234": true, "password123!": true, "administrator": true, "administrator1": true,
	"iloveyou1234": true, "qwerty123456": true, "1q2w3e4r5t6y": true, "1qaz2wsx3edc": true,
	"abc123abc123": true, "changeme1234": true, "letmein12345": true, "welcome12345": true,
	"correcthorsebatterystaple": true, "correct horse battery staple": true,
	"trustno1trustno1": true, "secretsecret": true, "mysecretpassword": true,
	"testpassword": true, "testtesttest": true, "changemenow!": true,
	"supersecret123": true, "superpassword": true, "p@ssw0rd1234": true, "p@ssword1234": true,
}

// runs are alphabets and keyboard rows: a password that is a stretch of one
// of them (forwards or backwards) is refused.
var runs = []string{
	"abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz",
	"0123456789012345678901234567890123456789",
	"qwertyuiopasdfghjklzxcvbnmqwertyuiopasdfghjklzxcvbnm",
	"qwertzuiopasdfghjklyxcvbnm", "azertyuiopqsdfghjklmwxcvbn",
	"1234567890qwertyuiopasdfghjklzxcvbnm",
}

// CheckPassword refuses a password that offline guessing would find
// quickly: fewer than MinPasswordLength characters, fewer than 6 different
// characters, a common password, or a run of the alphabet, the digits or a
// keyboard row. The CA's keys and every provisioner key are encrypted with a
// password, and anyone who obtains an encrypted key can try passwords
// against it at leisure. A password of random words or random bytes passes.
func CheckPassword(pw []byte) error {
	if why := passwordWeakness(pw); why != "" {
		return errorf("%s", why)
	}
	return nil
}

// passwordWeakness says why CheckPassword refuses pw, without the package
// prefix, or "" when it passes.
func passwordWeakness(pw []byte) string {
	s := string(pw)
	n := utf8.RuneCountInString(s)
	distinct := map[rune]bool{}
	for _, r := range s {
		distinct[r] = true
	}
	lower := strings.ToLower(s)
	var why string
	switch {
	case n < MinPasswordLength:
		why = fmt.Sprintf("%d %s", n, plural(n, "character"))
	case commonPasswords[lower]:
		why = "a common password"
	case len(distinct) < minDistinctChars:
		why = fmt.Sprintf("only %d different %s", len(distinct), plural(len(distinct), "character"))
	case isRun(lower):
		why = "a run of the alphabet, the digits or a keyboard row"
	default:
		return ""
	}
	return fmt.Sprintf("weak password (%s): use at least %d characters, %d of them different, not a common password or a keyboard run; random words or `openssl rand -base64 24` will do. --insecure-password accepts it anyway, but whoever obtains an encrypted key can then guess the password offline",
		why, MinPasswordLength, minDistinctChars)
}

func isRun(s string) bool {
	rev := []rune(s)
	for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
		rev[i], rev[j] = rev[j], rev[i]
	}
	for _, r := range runs {
		if strings.Contains(r, s) || strings.Contains(r, string(rev)) {
			return true
		}
	}
	return false
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}
