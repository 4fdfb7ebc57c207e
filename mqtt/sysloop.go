package mqtt

import (
	"time"

	"github.com/beaconmq/beacon/storage"
)

// Version is the broker version reported in $SYS/broker/version.
var Version = "0.1.0-dev"

// initSys connects the $SYS gauges (sys.go) to the server's state.
func (s *Server) initSys() {
	s.sys.clientsTotal = func() int64 {
		s.mu.Lock()
		defer s.mu.Unlock()
		return int64(len(s.sessions))
	}
	s.sys.subscriptionsCount = func() int64 { return int64(s.tree.Count()) }
	s.sys.retainedCount = func() int64 { return int64(s.retained.Len()) }
}

// syncSys copies the server's counters into the $SYS counters.
func (s *Server) syncSys() {
	st := &s.stats
	s.sys.clientsConnected.Store(st.ClientsConnected.Load())
	if n := st.ClientsConnected.Load(); n > s.sys.clientsMaximum.Load() {
		s.sys.clientsMaximum.Store(n)
	}
	s.sys.clientsExpired.Store(st.SessionsExpired.Load())
	s.sys.sockets.Store(st.ConnectionsTotal.Load())
	s.sys.connects.Store(st.Connects.Load())
	s.sys.messagesReceived.Store(st.PacketsReceived.Load())
	s.sys.messagesSent.Store(st.PacketsSent.Load())
	s.sys.publishReceived.Store(st.MessagesReceived.Load())
	s.sys.publishSent.Store(st.MessagesSent.Load())
	s.sys.publishDropped.Store(st.DroppedSlowQoS0.Load() + st.DroppedQueueFull.Load() +
		st.Session.Expired.Load() + st.Session.TooLarge.Load() + st.Session.Offline0.Load())
	s.sys.bytesReceived.Store(st.BytesReceived.Load())
	s.sys.bytesSent.Store(st.BytesSent.Load())
}

// sysLoop publishes the $SYS topics that changed every SysInterval, as
// retained QoS 0 messages (as Mosquitto does).
func (s *Server) sysLoop() {
	t := time.NewTicker(s.opts.SysInterval)
	defer t.Stop()
	changes := sysChanges{}
	publish := func() {
		s.syncSys()
		now := time.Now()
		for _, sm := range changes.filter(s.sys.messages(now, s.started, Version)) {
			m := &storage.Message{Topic: sm.Topic, Payload: sm.Payload, Retain: true, Created: now}
			if _, err := s.publish(m); err != nil {
				s.log.Warn("publishing $SYS failed", "topic", sm.Topic, "err", err)
			}
		}
	}
	publish()
	for {
		select {
		case <-s.quit:
			return
		case <-t.C:
			publish()
		}
	}
}
