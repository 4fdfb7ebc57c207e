package mqtt

import "net/http"

// registerMetrics serves /metrics (Prometheus). Stub: filled in by the
// operations work.
func (s *Server) registerMetrics(mux *http.ServeMux) {}
