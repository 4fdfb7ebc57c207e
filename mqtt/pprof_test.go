package mqtt

import (
	"net/http"
	"strings"
	"testing"
)

// Profiles are served to a token holder (or loopback without a token) and
// refused without the token once one is configured.
func TestPprofBehindAdminAccess(t *testing.T) {
	s := startHTTPServer(t, func(o *Options) { o.AdminToken = "prof-token" })
	if code, _ := adminDo(t, s, "GET", "/debug/pprof/heap?debug=1", ""); code != http.StatusUnauthorized {
		t.Errorf("heap profile without token: %d, want 401", code)
	}
	code, body := adminDo(t, s, "GET", "/debug/pprof/heap?debug=1", "prof-token")
	if code != http.StatusOK || !strings.Contains(body, "heap profile") {
		t.Errorf("heap profile with token: %d %.200q", code, body)
	}
	code, body = adminDo(t, s, "GET", "/debug/pprof/", "prof-token")
	if code != http.StatusOK || !strings.Contains(body, "goroutine") {
		t.Errorf("index with token: %d %.200q", code, body)
	}

	open := startHTTPServer(t, nil)
	if code, body := adminDo(t, open, "GET", "/debug/pprof/goroutine?debug=1", ""); code != http.StatusOK || !strings.Contains(body, "goroutine profile") {
		t.Errorf("goroutine profile from loopback without a token configured: %d %.200q", code, body)
	}
}
