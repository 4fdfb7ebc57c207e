package mqtt

import "errors"

// Reload re-reads the files the server was configured with (password
// file, ACL file, TLS certificates) without dropping connections; serve
// calls it on SIGHUP. A file that fails to load leaves the previous
// version in force and is reported in the error.
func (s *Server) Reload() error {
	return errors.Join(s.reloadAuth(), s.reloadTLS())
}
