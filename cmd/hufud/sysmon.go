package main

import (
	"os"
	"strconv"
	"strings"
	"syscall"
)

// sysmonGODEBUG keeps the Go runtime's monitor thread, sysmon, out of its deep sleep.
//
// sysmon sleeps deeply whenever every P is idle, and the next system call entered wakes it;
// it then polls every 20 µs until every P is idle again. A daemon answering one call at a
// time goes idle between calls, so each call paid for that wake-up and about six 20 µs
// sleeps. On the 2-core virtual machine we measure on, sysmon's sleeps were 14 % of the
// daemon's CPU at one call in flight (perf record, issue 18). With schedtrace set, sysmon
// never sleeps deeply (runtime/proc.go: "sysmon should not enter deep sleep if schedtrace
// is enabled"): when nothing needs it, it backs off to a 10 ms poll instead, about 0.6 % of
// a core on an idle appliance. The interval is the largest the runtime takes, so the trace
// line that schedtrace prints comes once every 24.8 days of the machine's uptime.
const sysmonGODEBUG = "schedtrace=2147483647"

// execWithSysmonAwake starts this program again in place (execve: same process, same
// arguments) with sysmonGODEBUG in GODEBUG, because the runtime reads schedtrace only when
// it starts. It returns only if it does not exec: nil when GODEBUG sets schedtrace already
// (see sysmonEnv), else why the exec failed.
func execWithSysmonAwake() error {
	env, ok := sysmonEnv(os.Environ())
	if !ok {
		return nil
	}
	// /proc/self/exe, not the path hufud was started by: that may name a newer binary by now.
	return syscall.Exec("/proc/self/exe", os.Args, env)
}

// sysmonEnv is environ with sysmonGODEBUG added to GODEBUG, and false if GODEBUG sets
// schedtrace already: the restarted process goes on, and an operator who sets it
// (schedtrace=0 turns this off) decides, as with GOGC. It reads GODEBUG as the runtime does:
// the first GODEBUG variable, even an empty one, its settings untrimmed, and a schedtrace
// that is not an int32 ignored (then the one added, being later, applies).
func sysmonEnv(environ []string) ([]string, bool) {
	godebug, found := "", false
	env := make([]string, 0, len(environ)+1)
	for _, kv := range environ {
		if v, ok := strings.CutPrefix(kv, "GODEBUG="); ok {
			if !found {
				godebug, found = v, true
			}
			continue
		}
		env = append(env, kv)
	}
	for _, setting := range strings.Split(godebug, ",") {
		if v, ok := strings.CutPrefix(setting, "schedtrace="); ok {
			if _, err := strconv.ParseInt(v, 10, 32); err == nil {
				return environ, false
			}
		}
	}
	if godebug != "" {
		godebug += ","
	}
	return append(env, "GODEBUG="+godebug+sysmonGODEBUG), true
}
