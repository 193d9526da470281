package config

import (
	"sort"
	"strings"
)

// OtherEnv are the HUFU_* variables that are not configuration keys but are read by the
// hufu CLI, SoftHSM2 discovery or the tests; UnknownEnv does not warn about them.
var OtherEnv = []string{
	// softhsm: the PKCS#11 module path.
	"HUFU_PKCS11_MODULE",
	// The hufu CLI (cmd/hufu).
	"HUFU_ADDR", "HUFU_DAEMON_DIR", "HUFU_CA", "HUFU_TLS_CERT", "HUFU_TLS_KEY", "HUFU_HOME", "HUFU_PIN",
	"HUFU_ADMIN_URL", "HUFU_ADMIN_TOKEN", "HUFU_ADMIN_TOKEN_FILE", "HUFU_ADMIN_CA", // hufu admin
	// Read by the hufu CLI with a warning, until scripts move to HUFU_TLS_CERT and HUFU_TLS_KEY.
	"HUFU_CERT", "HUFU_KEY",
	// Tests and benchmarks: child processes and shared fixtures.
	"HUFU_SOFTHSMTEST_DIR", "HUFU_OPENING_CRASH_CHILD", "HUFU_STORE_CRASH_DIR", "HUFU_STORE_CRASH_KEY",
	"HUFU_BENCH_SESSIONS", "HUFU_HSM_CHILD", "HUFU_HSM_CHILD_BLOB", "HUFU_HSM_CHILD_LABEL",
	"HUFU_HSM_CHILD_MODULE", "HUFU_HSM_CHILD_PINFILE", "HUFU_HSM_CHILD_PUB", "HUFU_HSM_CHILD_VERIFIER",
}

// EnvWarning is a HUFU_* variable that nothing reads.
type EnvWarning struct {
	Name string // the variable's name; its value is never kept, it may be a secret
	// Nearest is the configuration variable it is probably a misspelling of, or "".
	Nearest string
}

func (w EnvWarning) String() string {
	s := "environment variable " + w.Name + " is not a configuration key and is ignored"
	if w.Nearest != "" {
		s += " (did you mean " + w.Nearest + "?)"
	}
	return s
}

// UnknownEnv returns a warning for each variable of environ whose name starts with HUFU_
// (in any case) and is neither a key's variable nor one of OtherEnv, sorted by name.
func UnknownEnv(environ []string) []EnvWarning {
	known := map[string]bool{}
	var keyEnvs []string
	for _, k := range Keys() {
		known[k.Env] = true
		keyEnvs = append(keyEnvs, k.Env)
	}
	for _, name := range OtherEnv {
		known[name] = true
	}
	var ws []EnvWarning
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(strings.ToUpper(name), "HUFU_") || known[name] {
			continue
		}
		ws = append(ws, EnvWarning{Name: name, Nearest: nearest(strings.ToUpper(name), keyEnvs)})
	}
	sort.Slice(ws, func(i, j int) bool { return ws[i].Name < ws[j].Name })
	return ws
}

// nearest returns the one candidate within a small edit distance of name (a typo, a
// lower-case name), or "" if there is none or no single best.
func nearest(name string, candidates []string) string {
	const maxDistance = 2
	best, bestD, ties := "", maxDistance+1, 0
	for _, c := range candidates {
		switch d := editDistance(name, c); {
		case d < bestD:
			best, bestD, ties = c, d, 1
		case d == bestD:
			ties++
		}
	}
	if ties != 1 {
		return ""
	}
	return best
}

// editDistance is the Levenshtein distance of a and b (bytes: the names are ASCII).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
