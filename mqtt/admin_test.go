package mqtt

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/beaconmq/beacon/packets"
	"github.com/beaconmq/beacon/storage"
)

// api calls the admin API of s with token ("" sends no Authorization
// header) and returns the status and body.
func adminDo(t *testing.T, s *Server, method, path, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+s.HTTPAddr()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	cl := &http.Client{Timeout: testTimeout}
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// apiJSON calls the admin API, requires want as the status and decodes the
// body into v.
func adminJSON(t *testing.T, s *Server, method, path, token string, want int, v any) {
	t.Helper()
	code, body := adminDo(t, s, method, path, token)
	if code != want {
		t.Fatalf("%s %s: status %d, want %d: %s", method, path, code, want, body)
	}
	if v != nil {
		if err := json.Unmarshal([]byte(body), v); err != nil {
			t.Fatalf("%s %s: decoding %q: %v", method, path, body, err)
		}
	}
}

// Every admin route answers 401 without the token or with a wrong one, and
// serves with the right one.
func TestAdminToken(t *testing.T) {
	const token = "s3cret-token"
	s := startHTTPServer(t, func(o *Options) { o.AdminToken = token })
	routes := []struct{ method, path string }{
		{"GET", "/api/v1/server"},
		{"GET", "/api/v1/clients"},
		{"GET", "/api/v1/clients/nobody"},
		{"POST", "/api/v1/clients/nobody/disconnect"},
		{"GET", "/api/v1/sessions"},
		{"GET", "/api/v1/sessions/nobody"},
		{"GET", "/api/v1/subscriptions"},
		{"GET", "/api/v1/retained"},
		{"DELETE", "/api/v1/retained?topic=none"},
		{"GET", "/api/v1/dlq"}, // dlqapi.go, wrapped by adminOnly too
	}
	for _, r := range routes {
		for _, bad := range []string{"", "wrong", token + "x"} {
			code, body := adminDo(t, s, r.method, r.path, bad)
			if code != http.StatusUnauthorized {
				t.Errorf("%s %s with token %q: status %d, want 401: %s", r.method, r.path, bad, code, body)
			}
		}
		if code, body := adminDo(t, s, r.method, r.path, token); code == http.StatusUnauthorized || code == http.StatusForbidden {
			t.Errorf("%s %s with the token: status %d: %s", r.method, r.path, code, body)
		}
	}
	// Health and metrics stay open: probes and Prometheus carry no token.
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		if code, _ := adminDo(t, s, "GET", path, ""); code != http.StatusOK {
			t.Errorf("GET %s without token: %d", path, code)
		}
	}
}

// Without a token the admin API answers loopback peers and refuses the
// rest with 403. Tests only reach the server over loopback, so the remote
// case calls the handler with a made-up peer address.
func TestAdminNoTokenLoopbackOnly(t *testing.T) {
	s := startHTTPServer(t, nil)
	var info ServerInfo
	adminJSON(t, s, "GET", "/api/v1/server", "", http.StatusOK, &info)
	if info.AdminToken {
		t.Error("server info says a token is set")
	}
	h := s.adminOnly(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) }))
	for peer, want := range map[string]int{
		"192.0.2.7:40000":     http.StatusForbidden,
		"[2001:db8::1]:40000": http.StatusForbidden,
		"127.0.0.1:40000":     http.StatusTeapot,
		"[::1]:40000":         http.StatusTeapot,
		"garbage":             http.StatusForbidden,
	} {
		req := httptest.NewRequest("GET", "/api/v1/server", nil)
		req.RemoteAddr = peer
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != want {
			t.Errorf("peer %s: status %d, want %d", peer, rec.Code, want)
		}
	}
	// A browser's cross-site POST from a page on this host is refused
	// (CSRF); the same request from curl (no such headers) passes.
	for hdr, want := range map[[2]string]int{
		{"Sec-Fetch-Site", "cross-site"}:        http.StatusForbidden,
		{"Origin", "http://evil.example"}:       http.StatusForbidden,
		{"Sec-Fetch-Site", "same-origin"}:       http.StatusTeapot,
		{"X-Nothing", "plain client like curl"}: http.StatusTeapot,
	} {
		req := httptest.NewRequest("POST", "/api/v1/clients/x/disconnect", nil)
		req.RemoteAddr = "127.0.0.1:40000"
		req.Header.Set(hdr[0], hdr[1])
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != want {
			t.Errorf("POST with %s: %s: status %d, want %d", hdr[0], hdr[1], rec.Code, want)
		}
	}
}

func TestAdminServerInfo(t *testing.T) {
	s := startHTTPServer(t, func(o *Options) { o.AdminToken = "t" })
	var info ServerInfo
	adminJSON(t, s, "GET", "/api/v1/server", "t", http.StatusOK, &info)
	if info.Version != Version || info.Listeners["mqtt"] != s.MQTTAddr() || info.Listeners["http"] != s.HTTPAddr() {
		t.Errorf("server info %+v", info)
	}
	if _, ok := info.Listeners["ws"]; ok {
		t.Errorf("disabled ws listener listed: %+v", info.Listeners)
	}
	if info.Storage.Kind != "memory" || !info.AdminToken || info.Started.IsZero() {
		t.Errorf("server info %+v", info)
	}
}

// connectPersistent connects a 5.0 client whose session outlives the
// connection.
func adminPersistent(t *testing.T, s *Server, id string) *tclient {
	t.Helper()
	c := dial(t, s, packets.V5)
	c.connect(id, true, func(p *packets.Connect) { p.Properties.SessionExpiry = 600 })
	return c
}

func TestAdminClientsSessionsSubscriptions(t *testing.T) {
	s := startHTTPServer(t, nil)
	a := adminPersistent(t, s, "c-a")
	a.subscribe(1, packets.Subscription{Filter: "x/#", QoS: 1}, packets.Subscription{Filter: "y", QoS: 0})
	b := adminPersistent(t, s, "c-b")
	b.subscribe(1, packets.Subscription{Filter: "x/1", QoS: 1})
	off := adminPersistent(t, s, "c-off")
	off.subscribe(1, packets.Subscription{Filter: "q/#", QoS: 1})
	off.disconnect()
	eventually(t, testTimeout, func() error {
		var p apiPage[SessionInfo]
		adminJSON(t, s, "GET", "/api/v1/sessions?state=offline", "", http.StatusOK, &p)
		if p.Total != 1 {
			return fmt.Errorf("offline sessions %+v", p)
		}
		return nil
	})
	a.publish("q/1", "m1", 1, false, 7) // queued for c-off

	// Clients: connected only, sorted, paginated.
	var clients apiPage[SessionInfo]
	adminJSON(t, s, "GET", "/api/v1/clients?limit=1", "", http.StatusOK, &clients)
	if clients.Total != 2 || len(clients.Items) != 1 || clients.Items[0].ClientID != "c-a" || clients.NextOffset == nil || *clients.NextOffset != 1 {
		t.Fatalf("clients page 1: %+v", clients)
	}
	clients = apiPage[SessionInfo]{} // next_offset is absent on the last page
	adminJSON(t, s, "GET", "/api/v1/clients?limit=1&offset=1", "", http.StatusOK, &clients)
	if len(clients.Items) != 1 || clients.Items[0].ClientID != "c-b" || clients.NextOffset != nil {
		t.Fatalf("clients page 2: %+v", clients)
	}
	if it := clients.Items[0]; !it.Online || it.Protocol != "5.0" || it.Remote == "" || it.KeepAlive == nil || *it.KeepAlive != 30 || it.Subscriptions != 1 {
		t.Errorf("client c-b: %+v", it)
	}

	var detail SessionInfo
	adminJSON(t, s, "GET", "/api/v1/clients/c-a", "", http.StatusOK, &detail)
	if len(detail.Filters) != 2 || detail.Filters[0].Filter != "x/#" || detail.Filters[0].QoS != 1 || detail.Filters[1].Filter != "y" {
		t.Errorf("client detail: %+v", detail)
	}
	adminJSON(t, s, "GET", "/api/v1/clients/c-off", "", http.StatusNotFound, nil) // offline: not a client

	// Sessions: online and offline, with queued counts.
	var sessions apiPage[SessionInfo]
	adminJSON(t, s, "GET", "/api/v1/sessions", "", http.StatusOK, &sessions)
	if sessions.Total != 3 {
		t.Fatalf("sessions: %+v", sessions)
	}
	offline := sessions.Items[2]
	if offline.ClientID != "c-off" || offline.Online || offline.Queued != 1 || offline.DisconnectedAt == nil || offline.ExpiresAt == nil || offline.ExpiryInterval != 600 {
		t.Errorf("offline session: %+v", offline)
	}
	adminJSON(t, s, "GET", "/api/v1/sessions/c-off", "", http.StatusOK, &detail)
	if detail.Queued != 1 || len(detail.Filters) != 1 {
		t.Errorf("offline session detail: %+v", detail)
	}
	adminJSON(t, s, "GET", "/api/v1/sessions/nobody", "", http.StatusNotFound, nil)
	adminJSON(t, s, "GET", "/api/v1/sessions?state=sleepy", "", http.StatusBadRequest, nil)

	// Subscriptions: all, and of one client.
	var subs apiPage[SubscriptionInfo]
	adminJSON(t, s, "GET", "/api/v1/subscriptions", "", http.StatusOK, &subs)
	if subs.Total != 4 {
		t.Errorf("subscriptions: %+v", subs)
	}
	adminJSON(t, s, "GET", "/api/v1/subscriptions?client=c-b", "", http.StatusOK, &subs)
	if subs.Total != 1 || subs.Items[0].ClientID != "c-b" || subs.Items[0].Filter != "x/1" {
		t.Errorf("subscriptions of c-b: %+v", subs)
	}

	// Bad pagination parameters are refused.
	for _, q := range []string{"limit=0", "limit=5000", "offset=-1", "limit=abc"} {
		adminJSON(t, s, "GET", "/api/v1/sessions?"+q, "", http.StatusBadRequest, nil)
	}
	// An offset past the end is an empty page, not an error.
	adminJSON(t, s, "GET", "/api/v1/sessions?offset=10", "", http.StatusOK, &sessions)
	if sessions.Total != 3 || len(sessions.Items) != 0 {
		t.Errorf("past the end: %+v", sessions)
	}
}

// Disconnecting a client sends a 5.0 client DISCONNECT 0x98 and closes
// it; its session stays, offline.
func TestAdminDisconnect(t *testing.T) {
	s := startHTTPServer(t, nil)
	c := adminPersistent(t, s, "kick-me")
	adminJSON(t, s, "POST", "/api/v1/clients/kick-me/disconnect", "", http.StatusOK, nil)
	got := c.expectClosed()
	if len(got) != 1 {
		t.Fatalf("got %v, want one DISCONNECT", got)
	}
	if d, ok := got[0].(*packets.Disconnect); !ok || d.ReasonCode != packets.AdministrativeAction {
		t.Fatalf("got %T %+v, want DISCONNECT 0x98", got[0], got[0])
	}
	eventually(t, testTimeout, func() error {
		var si SessionInfo
		adminJSON(t, s, "GET", "/api/v1/sessions/kick-me", "", http.StatusOK, &si)
		if si.Online {
			return fmt.Errorf("session still online")
		}
		return nil
	})
	adminJSON(t, s, "POST", "/api/v1/clients/kick-me/disconnect", "", http.StatusNotFound, nil)
}

// Client identifiers with '/' are reachable when escaped as %2F.
func TestAdminEscapedClientID(t *testing.T) {
	s := startHTTPServer(t, nil)
	adminPersistent(t, s, "site/7")
	var si SessionInfo
	adminJSON(t, s, "GET", "/api/v1/clients/site%2F7", "", http.StatusOK, &si)
	if si.ClientID != "site/7" {
		t.Errorf("client %+v", si)
	}
}

func TestAdminRetained(t *testing.T) {
	s := startHTTPServer(t, nil)
	pub := dial(t, s, packets.V311)
	pub.connect("ret-pub", true, nil)
	pub.publish("r/b", "two", 1, true, 1)
	pub.publish("r/a", "one", 0, true, 0)
	pub.publish("other", "three", 1, true, 2)
	var list apiPage[RetainedInfo]
	eventually(t, testTimeout, func() error {
		adminJSON(t, s, "GET", "/api/v1/retained", "", http.StatusOK, &list)
		if list.Total != 3 {
			return fmt.Errorf("retained: %+v", list)
		}
		return nil
	})
	adminJSON(t, s, "GET", "/api/v1/retained?filter=r/%2B", "", http.StatusOK, &list)
	if list.Total != 2 || list.Items[0].Topic != "r/a" || string(list.Items[0].Payload) != "one" || list.Items[1].QoS != 1 || list.Items[1].Size != 3 {
		t.Fatalf("retained r/+: %+v", list)
	}
	adminJSON(t, s, "GET", "/api/v1/retained?filter=a/%23/b", "", http.StatusBadRequest, nil)

	adminJSON(t, s, "DELETE", "/api/v1/retained?topic=r/b", "", http.StatusOK, nil)
	adminJSON(t, s, "DELETE", "/api/v1/retained?topic=r/b", "", http.StatusNotFound, nil)
	adminJSON(t, s, "DELETE", "/api/v1/retained", "", http.StatusBadRequest, nil)
	adminJSON(t, s, "GET", "/api/v1/retained?filter=r/%23", "", http.StatusOK, &list)
	if list.Total != 1 || list.Items[0].Topic != "r/a" {
		t.Fatalf("after delete: %+v", list)
	}
	// Gone for subscribers and from the store too.
	sub := dial(t, s, packets.V311)
	sub.connect("ret-sub", true, nil)
	sub.subscribe(1, packets.Subscription{Filter: "r/b", QoS: 1})
	sub.expectNothing(200 * time.Millisecond)
	var inStore bool
	if err := s.store.Retained(func(m *storage.Message) bool {
		inStore = inStore || m.Topic == "r/b"
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if inStore {
		t.Error("deleted retained message still in the store")
	}
}

func TestHealthAndReady(t *testing.T) {
	st := storage.NewMemory()
	s := startHTTPServer(t, func(o *Options) { o.Store = st })
	if body := httpGet(t, "http://"+s.HTTPAddr()+"/healthz"); body != "ok\n" {
		t.Errorf("/healthz: %q", body)
	}
	code, body := adminDo(t, s, "GET", "/readyz", "")
	if code != http.StatusOK || !strings.Contains(body, `"ready"`) {
		t.Errorf("/readyz: %d %s", code, body)
	}
	_ = st.Close() // storage gone: not ready, still alive
	code, body = adminDo(t, s, "GET", "/readyz", "")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "storage") {
		t.Errorf("/readyz with the store closed: %d %s", code, body)
	}
	var reason map[string]string
	if err := json.Unmarshal([]byte(body), &reason); err != nil || reason["reason"] == "" {
		t.Errorf("/readyz body %q is not JSON with a reason: %v", body, err)
	}
	if code, _ := adminDo(t, s, "GET", "/healthz", ""); code != http.StatusOK {
		t.Errorf("/healthz with the store closed: %d", code)
	}
}

// A server that has not started, or is shutting down, is not ready.
func TestNotReadyStates(t *testing.T) {
	o := DefaultOptions()
	o.MQTTAddr, o.WSAddr, o.HTTPAddr = "127.0.0.1:0", "", ""
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	if r := s.notReady(); r != "not started" {
		t.Errorf("before Start: %q", r)
	}
	s.mu.Lock()
	s.started, s.closing = time.Now(), true
	s.mu.Unlock()
	if r := s.notReady(); r != "shutting down" {
		t.Errorf("closing: %q", r)
	}
}

// Routes added with HandleAdmin (bridges) sit behind the same token check.
func TestHandleAdminRoutesChecked(t *testing.T) {
	o := DefaultOptions()
	o.MQTTAddr, o.WSAddr, o.HTTPAddr, o.SysInterval = "127.0.0.1:0", "", "127.0.0.1:0", 0
	o.AdminToken = "bridge-token"
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	s.HandleAdmin("GET /api/v1/custom", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeAdminJSON(w, http.StatusOK, map[string]bool{"custom": true})
	}))
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	if code, _ := adminDo(t, s, "GET", "/api/v1/custom", ""); code != http.StatusUnauthorized {
		t.Errorf("without token: %d, want 401", code)
	}
	if code, body := adminDo(t, s, "GET", "/api/v1/custom", "bridge-token"); code != http.StatusOK || !strings.Contains(body, "custom") {
		t.Errorf("with token: %d %s", code, body)
	}
}

// countingHandler collects the text of log records at info and above.
type countingHandler struct {
	mu    *sync.Mutex
	lines *[]string
	attrs []slog.Attr
}

func (h countingHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }
func (h countingHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	for _, a := range h.attrs {
		b.WriteString(" " + a.String())
	}
	r.Attrs(func(a slog.Attr) bool { b.WriteString(" " + a.String()); return true })
	h.mu.Lock()
	*h.lines = append(*h.lines, b.String())
	h.mu.Unlock()
	return nil
}
func (h countingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	h.attrs = append(append([]slog.Attr(nil), h.attrs...), as...)
	return h
}
func (h countingHandler) WithGroup(string) slog.Handler { return h }

// At info, connections are logged (with the disconnect reason) and
// messages are not: 200 messages add no log record.
func TestNoPerMessageInfoLogs(t *testing.T) {
	var mu sync.Mutex
	var lines []string
	s := startServer(t, func(o *Options) { o.Logger = slog.New(countingHandler{mu: &mu, lines: &lines}) })
	sub := dial(t, s, packets.V5)
	sub.connect("log-sub", true, nil)
	sub.subscribe(1, packets.Subscription{Filter: "log/#", QoS: 1})
	pub := dial(t, s, packets.V5)
	pub.connect("log-pub", true, nil)
	// The connect record is written after CONNACK goes out, so the client
	// can see CONNACK first: wait for both records before counting.
	eventually(t, testTimeout, func() error {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, l := range lines {
			if strings.HasPrefix(l, "client connected") {
				n++
			}
		}
		if n < 2 {
			return fmt.Errorf("%d \"client connected\" records so far: %q", n, lines)
		}
		return nil
	})
	mu.Lock()
	before := len(lines)
	mu.Unlock()
	for i := range 200 {
		qos := byte(i % 2)
		pub.publish("log/t", "m", qos, false, uint16(i+1))
		sub.recvPublish(true)
	}
	pub.disconnect()
	eventually(t, testTimeout, func() error {
		mu.Lock()
		defer mu.Unlock()
		for _, l := range lines {
			if strings.Contains(l, "client disconnected") && strings.Contains(l, "log-pub") && strings.Contains(l, "reason=") {
				return nil
			}
		}
		return fmt.Errorf("no disconnect record with a reason in %q", lines)
	})
	mu.Lock()
	defer mu.Unlock()
	if added := len(lines) - before; added > 1 {
		t.Errorf("%d info records while publishing 200 messages and disconnecting, want 1: %q", added, lines[before:])
	}
	connected := 0
	for _, l := range lines {
		if strings.Contains(l, "log/t") {
			t.Errorf("per-message record at info: %q", l)
		}
		if strings.HasPrefix(l, "client connected") {
			connected++
		}
	}
	if connected != 2 {
		t.Errorf("%d \"client connected\" records, want 2: %q", connected, lines)
	}
}
