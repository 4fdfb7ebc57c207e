package mqtt

import (
	"io"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
)

// The HTTP listener (Options.HTTPAddr) serves health checks, Prometheus
// metrics and the admin API. Each concern registers its routes on one mux
// from its own file: metrics.go, admin.go, dlqapi.go; packages outside
// mqtt (bridges) add theirs with HandleAdmin before Start.

type adminRoute struct {
	pattern string
	h       http.Handler
}

// HandleAdmin registers h for pattern (a net/http ServeMux pattern under
// /api/v1/) on the admin API, behind the same access check as the
// built-in admin routes. Call it before Start.
func (s *Server) HandleAdmin(pattern string, h http.Handler) {
	s.adminRoutes = append(s.adminRoutes, adminRoute{pattern, h})
}

// MetricsRegistry is the registry /metrics serves. Packages outside mqtt
// (bridges) register their collectors on it.
func (s *Server) MetricsRegistry() *prometheus.Registry { return s.metrics }

// httpMux builds the handler of the HTTP listener.
func (s *Server) httpMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	s.registerMetrics(mux)  // metrics.go
	s.registerAdminAPI(mux) // admin.go
	s.registerDLQAPI(mux)   // dlqapi.go
	s.registerPprof(mux)    // pprof.go
	for _, r := range s.adminRoutes {
		mux.Handle(r.pattern, s.adminOnly(r.h))
	}
	return mux
}

// readyz answers 200 when the broker can take traffic: started, not
// shutting down, every configured listener bound and the store answering
// a read. Otherwise 503 with the reason, so a load balancer or an
// orchestrator stops sending clients here. /healthz, by contrast, only
// says the process is alive.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if reason := s.notReady(); reason != "" {
		writeAdminJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "reason": reason})
		return
	}
	writeAdminJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// notReady returns why the broker is not ready, or "".
func (s *Server) notReady() string {
	s.mu.Lock()
	started, closing := !s.started.IsZero(), s.closing
	s.mu.Unlock()
	switch {
	case !started:
		return "not started"
	case closing:
		return "shutting down"
	case s.opts.MQTTAddr != "" && s.mqttLn == nil:
		return "MQTT listener not bound"
	case s.opts.WSAddr != "" && s.wsLn == nil:
		return "WebSocket listener not bound"
	case s.opts.TLSAddr != "" && s.TLSAddr() == "":
		return "TLS listener not bound"
	case s.opts.WSSAddr != "" && s.WSSAddr() == "":
		return "WebSocket TLS listener not bound"
	}
	// A cheap read: the store is open and answering.
	if _, err := s.store.Cursor(readyzCursor); err != nil {
		return "storage: " + err.Error()
	}
	return ""
}

// readyzCursor is a cursor name no bridge uses; /readyz reads it.
const readyzCursor = "$beacon/readyz"
