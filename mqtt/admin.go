package mqtt

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/beaconmq/beacon/packets"
	"github.com/beaconmq/beacon/session"
	"github.com/beaconmq/beacon/storage"
)

// The admin API: JSON over HTTP under /api/v1, for scripts, `beacon dlq`
// and a dashboard. docs/operations.md is its reference. Every route sits
// behind adminOnly. Lists are sorted by a stable key and paginated with
// ?limit= (default 100, at most 1000) and ?offset=; the answer says the
// total so a client knows when to stop.

const (
	defaultPageLimit = 100
	maxPageLimit     = 1000
)

// registerAdminAPI serves /api/v1/... (except the dead-letter routes, in
// dlqapi.go).
func (s *Server) registerAdminAPI(mux *http.ServeMux) {
	if s.opts.AdminToken == "" {
		s.log.Warn("admin API has no token (admin_token / BEACON_ADMIN_TOKEN): it answers loopback clients only", "http", s.HTTPAddr())
	}
	route := func(pattern string, h http.HandlerFunc) { mux.Handle(pattern, s.adminOnly(h)) }
	route("GET /api/v1/server", s.apiServer)
	route("GET /api/v1/clients", s.apiClients)
	route("GET /api/v1/clients/{id}", s.apiClient)
	route("POST /api/v1/clients/{id}/disconnect", s.apiDisconnect)
	route("GET /api/v1/sessions", s.apiSessions)
	route("GET /api/v1/sessions/{id}", s.apiSession)
	route("GET /api/v1/subscriptions", s.apiSubscriptions)
	route("GET /api/v1/retained", s.apiRetained)
	route("DELETE /api/v1/retained", s.apiDeleteRetained)
}

// adminOnly wraps an admin API handler with the access check. With
// Options.AdminToken set, a request must carry "Authorization: Bearer
// TOKEN" (401 otherwise, from any address). Without a token only clients
// connecting from a loopback address are answered (403 otherwise), so a
// broker started with defaults does not open its admin API to the network.
// Either way a state-changing request that a browser marks as cross-origin
// is refused (403): without a token, a web page open on the broker's host
// could otherwise disconnect clients or delete retained messages.
func (s *Server) adminOnly(h http.Handler) http.Handler {
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeAdminError(w, http.StatusForbidden, "cross-origin request refused: call the admin API from a script, not a web page of another origin")
	}))
	return cop.Handler(s.adminAccess(h))
}

// adminAccess is the token or loopback check of adminOnly.
func (s *Server) adminAccess(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if tok := s.opts.AdminToken; tok != "" {
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), []byte(tok)) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="beacon"`)
				writeAdminError(w, http.StatusUnauthorized, "missing or wrong bearer token")
				return
			}
		} else if !loopbackPeer(r) {
			writeAdminError(w, http.StatusForbidden, "the admin API has no token configured (admin_token) and answers loopback clients only")
			return
		}
		h.ServeHTTP(w, r)
	})
}

// loopbackPeer reports whether the request came from a loopback address.
// Forwarding headers are ignored: behind a proxy, configure a token.
func loopbackPeer(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func writeAdminJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// apiError is the body of every error answer.
type apiError struct {
	Error string `json:"error"`
}

func writeAdminError(w http.ResponseWriter, code int, msg string) {
	writeAdminJSON(w, code, apiError{msg})
}

// page is the envelope of every list.
type apiPage[T any] struct {
	Items  []T `json:"items"`
	Total  int `json:"total"`
	Offset int `json:"offset"`
	Limit  int `json:"limit"`
	// NextOffset is the offset of the next page; absent on the last page.
	NextOffset *int `json:"next_offset,omitempty"`
}

// pageParams reads ?limit= and ?offset=.
func pageParams(r *http.Request) (limit, offset int, err error) {
	limit, offset = defaultPageLimit, 0
	if v := r.URL.Query().Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > maxPageLimit {
			return 0, 0, fmt.Errorf("limit %q: use 1..%d", v, maxPageLimit)
		}
	}
	if v := r.URL.Query().Get("offset"); v != "" {
		if offset, err = strconv.Atoi(v); err != nil || offset < 0 {
			return 0, 0, fmt.Errorf("offset %q: use a whole number >= 0", v)
		}
	}
	return limit, offset, nil
}

// paginate answers with the page of items (already sorted) that the
// request asks for.
func paginate[T any](w http.ResponseWriter, r *http.Request, items []T) {
	limit, offset, err := pageParams(r)
	if err != nil {
		writeAdminError(w, http.StatusBadRequest, err.Error())
		return
	}
	p := apiPage[T]{Total: len(items), Offset: offset, Limit: limit, Items: []T{}}
	if offset < len(items) {
		end := min(offset+limit, len(items))
		p.Items = items[offset:end]
		if end < len(items) {
			p.NextOffset = &end
		}
	}
	writeAdminJSON(w, http.StatusOK, p)
}

// ServerInfo is the answer of GET /api/v1/server.
type ServerInfo struct {
	Version       string            `json:"version"`
	Started       time.Time         `json:"started"`
	UptimeSeconds int64             `json:"uptime_seconds"`
	Listeners     map[string]string `json:"listeners"`
	Storage       StorageInfo       `json:"storage"`
	Clients       int               `json:"clients_connected"`
	Sessions      int               `json:"sessions"`
	Subscriptions int               `json:"subscriptions"`
	Retained      int               `json:"retained_messages"`
	AdminToken    bool              `json:"admin_token"`
}

// StorageInfo describes the store in ServerInfo.
type StorageInfo struct {
	Kind      string `json:"kind"`
	LogHead   uint64 `json:"log_head"`
	LSMBytes  *int64 `json:"lsm_bytes,omitempty"`
	VlogBytes *int64 `json:"vlog_bytes,omitempty"`
}

func (s *Server) apiServer(w http.ResponseWriter, r *http.Request) {
	online, offline, _, _ := s.sessionCounts()
	info := ServerInfo{
		Version:       Version,
		Started:       s.started.UTC(),
		UptimeSeconds: int64(time.Since(s.started) / time.Second),
		Listeners:     map[string]string{},
		Storage:       StorageInfo{Kind: storageKind(s.store), LogHead: s.store.Head()},
		Clients:       online,
		Sessions:      online + offline,
		Subscriptions: s.tree.Count(),
		Retained:      s.retained.Len(),
		AdminToken:    s.opts.AdminToken != "",
	}
	for name, addr := range map[string]string{"mqtt": s.MQTTAddr(), "ws": s.WSAddr(), "tls": s.TLSAddr(), "wss": s.WSSAddr(), "http": s.HTTPAddr()} {
		if addr != "" {
			info.Listeners[name] = addr
		}
	}
	if sz, ok := s.store.(storageSizer); ok {
		lsm, vlog := sz.Size()
		info.Storage.LSMBytes, info.Storage.VlogBytes = &lsm, &vlog
	}
	writeAdminJSON(w, http.StatusOK, info)
}

// storageKind names the store's implementation: "badger", "memory", ….
func storageKind(st storage.Store) string {
	name := fmt.Sprintf("%T", st)
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		name = name[i+1:]
	}
	return strings.ToLower(name)
}

// SessionInfo describes one session (GET /api/v1/sessions, /clients).
type SessionInfo struct {
	ClientID string `json:"client_id"`
	Online   bool   `json:"online"`
	Protocol string `json:"protocol"`
	// ExpiryInterval is the Session Expiry Interval in seconds
	// (4294967295: never; 0: ends with the connection).
	ExpiryInterval uint32     `json:"expiry_interval"`
	DisconnectedAt *time.Time `json:"disconnected_at,omitempty"`
	ExpiresAt      *time.Time `json:"expires_at,omitempty"`
	Subscriptions  int        `json:"subscriptions"`
	Inflight       int        `json:"inflight"`
	Queued         int        `json:"queued"`
	// Connection details, for online sessions.
	Remote    string `json:"remote,omitempty"`
	KeepAlive *int   `json:"keep_alive,omitempty"` // seconds; 0 = none
	// Filters lists the subscriptions (detail views only).
	Filters []SubscriptionInfo `json:"filters,omitempty"`
}

// SubscriptionInfo describes one subscription.
type SubscriptionInfo struct {
	ClientID          string `json:"client_id"`
	Filter            string `json:"filter"`
	QoS               byte   `json:"qos"`
	NoLocal           bool   `json:"no_local,omitempty"`
	RetainAsPublished bool   `json:"retain_as_published,omitempty"`
	RetainHandling    byte   `json:"retain_handling,omitempty"`
	SubscriptionID    uint32 `json:"subscription_id,omitempty"`
}

func subscriptionInfo(clientID string, sub storage.Subscription) SubscriptionInfo {
	return SubscriptionInfo{ClientID: clientID, Filter: sub.Filter, QoS: sub.QoS, NoLocal: sub.NoLocal,
		RetainAsPublished: sub.RetainAsPublished, RetainHandling: sub.RetainHandling, SubscriptionID: sub.SubscriptionID}
}

// sessionRef is one entry of the session table, copied under Server.mu.
type sessionRef struct {
	id   string
	sess *session.Session
	cl   *client
}

// sessionRefs copies the session table (sorted by client identifier), so
// the handlers read sessions without Server.mu held.
func (s *Server) sessionRefs() []sessionRef {
	s.mu.Lock()
	refs := make([]sessionRef, 0, len(s.sessions))
	for id, e := range s.sessions {
		if e.sess != nil {
			refs = append(refs, sessionRef{id, e.sess, e.cl})
		}
	}
	s.mu.Unlock()
	slices.SortFunc(refs, func(a, b sessionRef) int { return strings.Compare(a.id, b.id) })
	return refs
}

// sessionRef returns the entry of clientID.
func (s *Server) sessionRef(clientID string) (sessionRef, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.sessions[clientID]
	if e == nil || e.sess == nil {
		return sessionRef{}, false
	}
	return sessionRef{clientID, e.sess, e.cl}, true
}

// info describes ref; detail adds the subscription list.
func (ref sessionRef) info(detail bool) SessionInfo {
	rec := ref.sess.Record()
	inflight, queued := ref.sess.Counts()
	si := SessionInfo{
		ClientID:       ref.id,
		Online:         ref.cl != nil,
		Protocol:       rec.Version.String(),
		ExpiryInterval: rec.ExpiryInterval,
		Subscriptions:  len(rec.Subscriptions),
		Inflight:       inflight,
		Queued:         queued,
	}
	if ref.cl == nil {
		if t := ref.sess.DisconnectedAt(); !t.IsZero() {
			t = t.UTC()
			si.DisconnectedAt = &t
		}
		if t := ref.sess.ExpiresAt(); !t.IsZero() {
			t = t.UTC()
			si.ExpiresAt = &t
		}
	} else {
		// id, version and keepAlive are written before the client is
		// attached to the session table and read-only afterwards.
		si.Remote = ref.cl.conn.RemoteAddr().String()
		ka := int(ref.cl.keepAlive / time.Second)
		si.KeepAlive = &ka
		si.Protocol = ref.cl.version.String()
	}
	if detail {
		si.Filters = []SubscriptionInfo{}
		slices.SortFunc(rec.Subscriptions, func(a, b storage.Subscription) int { return strings.Compare(a.Filter, b.Filter) })
		for _, sub := range rec.Subscriptions {
			si.Filters = append(si.Filters, subscriptionInfo(ref.id, sub))
		}
	}
	return si
}

// apiClients lists the connected clients.
func (s *Server) apiClients(w http.ResponseWriter, r *http.Request) {
	var out []SessionInfo
	for _, ref := range s.sessionRefs() {
		if ref.cl != nil {
			out = append(out, ref.info(false))
		}
	}
	paginate(w, r, out)
}

// apiClient describes one connected client.
func (s *Server) apiClient(w http.ResponseWriter, r *http.Request) {
	ref, ok := s.sessionRef(r.PathValue("id"))
	if !ok || ref.cl == nil {
		writeAdminError(w, http.StatusNotFound, fmt.Sprintf("client %q is not connected", r.PathValue("id")))
		return
	}
	writeAdminJSON(w, http.StatusOK, ref.info(true))
}

// apiDisconnect closes a client's connection: a 5.0 client first gets
// DISCONNECT with reason 0x98 (administrative action). Its session stays
// as its expiry says, as after any disconnection.
func (s *Server) apiDisconnect(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	ref, ok := s.sessionRef(id)
	if !ok || ref.cl == nil {
		writeAdminError(w, http.StatusNotFound, fmt.Sprintf("client %q is not connected", id))
		return
	}
	s.log.Info("client disconnected by the admin API", "client", id, "remote", ref.cl.conn.RemoteAddr().String())
	ref.cl.kick(packets.AdministrativeAction)
	writeAdminJSON(w, http.StatusOK, map[string]any{"client_id": id, "disconnected": true})
}

// apiSessions lists sessions; ?state=online or ?state=offline filters.
func (s *Server) apiSessions(w http.ResponseWriter, r *http.Request) {
	state := r.URL.Query().Get("state")
	if state != "" && state != "online" && state != "offline" {
		writeAdminError(w, http.StatusBadRequest, fmt.Sprintf("state %q: use online or offline", state))
		return
	}
	var out []SessionInfo
	for _, ref := range s.sessionRefs() {
		if state == "online" && ref.cl == nil || state == "offline" && ref.cl != nil {
			continue
		}
		out = append(out, ref.info(false))
	}
	paginate(w, r, out)
}

// apiSession describes one session, online or offline.
func (s *Server) apiSession(w http.ResponseWriter, r *http.Request) {
	ref, ok := s.sessionRef(r.PathValue("id"))
	if !ok {
		writeAdminError(w, http.StatusNotFound, fmt.Sprintf("no session of client %q", r.PathValue("id")))
		return
	}
	writeAdminJSON(w, http.StatusOK, ref.info(true))
}

// apiSubscriptions lists every subscription, sorted by client and filter;
// ?client= restricts it to one client's.
func (s *Server) apiSubscriptions(w http.ResponseWriter, r *http.Request) {
	only := r.URL.Query().Get("client")
	var out []SubscriptionInfo
	for _, ref := range s.sessionRefs() {
		if only != "" && ref.id != only {
			continue
		}
		subs := ref.sess.Subscriptions()
		slices.SortFunc(subs, func(a, b storage.Subscription) int { return strings.Compare(a.Filter, b.Filter) })
		for _, sub := range subs {
			out = append(out, subscriptionInfo(ref.id, sub))
		}
	}
	paginate(w, r, out)
}

// RetainedInfo describes one retained message.
type RetainedInfo struct {
	Topic   string    `json:"topic"`
	QoS     byte      `json:"qos"`
	Size    int       `json:"size"`
	Payload []byte    `json:"payload"` // base64 in JSON
	Created time.Time `json:"created"`
	// ExpiresAt is set when the message has a Message Expiry Interval.
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// apiRetained lists retained messages whose topic matches ?filter= (a
// topic filter; default "#", which leaves out $ topics such as $SYS, as
// for subscribers), sorted by topic.
func (s *Server) apiRetained(w http.ResponseWriter, r *http.Request) {
	filter := r.URL.Query().Get("filter")
	if filter == "" {
		filter = "#"
	}
	if err := packets.ValidTopicFilter(filter); err != nil {
		writeAdminError(w, http.StatusBadRequest, fmt.Sprintf("filter %q: %v", filter, err))
		return
	}
	out := []RetainedInfo{}
	s.retained.Match(filter, func(topic string, m *storage.Message) bool {
		ri := RetainedInfo{Topic: topic, QoS: m.QoS, Size: len(m.Payload), Payload: m.Payload, Created: m.Created.UTC()}
		if t := m.ExpiresAt(); !t.IsZero() {
			t = t.UTC()
			ri.ExpiresAt = &t
		}
		out = append(out, ri)
		return true
	})
	slices.SortFunc(out, func(a, b RetainedInfo) int { return strings.Compare(a.Topic, b.Topic) })
	paginate(w, r, out)
}

// apiDeleteRetained deletes the retained message of ?topic= (in a query
// parameter because topics may contain "//" and other characters a path
// would not keep), as a client publishing an empty retained message would,
// without delivering anything.
func (s *Server) apiDeleteRetained(w http.ResponseWriter, r *http.Request) {
	topic := r.URL.Query().Get("topic")
	if topic == "" {
		writeAdminError(w, http.StatusBadRequest, "missing ?topic=")
		return
	}
	if _, ok := s.retained.Get(topic); !ok {
		writeAdminError(w, http.StatusNotFound, fmt.Sprintf("no retained message on topic %q", topic))
		return
	}
	if err := s.retain(&storage.Message{Topic: topic, Retain: true}); err != nil && !errors.Is(err, storage.ErrNotFound) {
		s.stats.StorageErrors.Add(1)
		s.log.Warn("deleting retained message failed", "topic", topic, "err", err)
		writeAdminError(w, http.StatusInternalServerError, "deleting retained message: "+err.Error())
		return
	}
	s.log.Info("retained message deleted by the admin API", "topic", topic)
	writeAdminJSON(w, http.StatusOK, map[string]any{"topic": topic, "deleted": true})
}
