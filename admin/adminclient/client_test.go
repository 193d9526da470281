package adminclient

import (
	"strings"
	"testing"
)

// TestNewRefusesCleartextOffLoopback: a bearer token crosses a network only over https.
func TestNewRefusesCleartextOffLoopback(t *testing.T) {
	for url, want := range map[string]string{
		"http://127.0.0.1:7080":      "",
		"http://[::1]:7080":          "",
		"http://localhost:7080":      "",
		"https://hufu.example:7080":  "",
		"http://192.0.2.1:7080":      "use https",
		"http://hufu.example:7080":   "use https",
		"ftp://127.0.0.1:7080":       "want http(s)",
		"http://":                    "want http(s)",
		"https://192.0.2.1:7080/x/y": "",
	} {
		_, err := New(Config{URL: url, Token: "t"})
		if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("New(%q) = %v, want %q", url, err, want)
		}
	}
}
