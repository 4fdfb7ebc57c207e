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
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "ok\n")
	})
	s.registerMetrics(mux)  // metrics.go
	s.registerAdminAPI(mux) // admin.go
	s.registerDLQAPI(mux)   // dlqapi.go
	for _, r := range s.adminRoutes {
		mux.Handle(r.pattern, s.adminOnly(r.h))
	}
	return mux
}
