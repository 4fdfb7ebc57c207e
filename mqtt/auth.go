package mqtt

// reloadAuth re-reads the password and ACL files (SIGHUP). Stub: filled in
// by the authentication work.
func (s *Server) reloadAuth() error { return nil }
