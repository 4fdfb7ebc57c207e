package mqtt

import (
	"errors"
	"runtime/debug"
	"sync"
	"time"

	"github.com/beaconmq/beacon/packets"
	"github.com/beaconmq/beacon/storage"
)

// The publish pipeline. A QoS 1/2 PUBLISH may be acknowledged only once its
// log append is durable, and with durability sync that is an fsync. If the
// reader waited for it before reading the next packet, a client's inflight
// window would buy nothing: one fsync per message per connection. Instead
// the reader hands accepted PUBLISH packets to a per-connection worker and
// goes on reading; the worker takes everything queued at that moment,
// appends it with one Append call (one group commit, shared with every
// other connection's batch waiting at that moment), then routes and
// acknowledges each message in the order received [MQTT-4.6.0-2]
// [MQTT-4.6.0-3] [MQTT-4.6.0-6].
//
// Rules that keep the protocol unchanged:
//   - Once the pipeline holds anything, QoS 0 PUBLISH packets queue behind
//     it too, so a client's messages are routed in the order it sent them
//     whatever their QoS.
//   - Packets whose effect depends on earlier PUBLISH packets having been
//     routed (SUBSCRIBE, UNSUBSCRIBE, DISCONNECT) wait until the pipeline
//     is empty (barrier); so does teardown, before the will, and PINGREQ,
//     which clients use as a barrier; a PUBREL for a QoS 2 message still
//     queued waits for it. Any acknowledgement the reader sends itself
//     (ackPublish: refusals) waits too, to keep acknowledgements in order.
//   - Accepted but unacknowledged messages count against the server's
//     Receive Maximum (session.InboundCheckPending).
//   - A QoS 2 PUBLISH resent while the first copy is still queued is
//     answered with PUBREC after the first copy, and not delivered again
//     [MQTT-4.3.3-10].
//
// The worker goroutine exists only while there is work, so an idle
// connection costs nothing here.

// maxBackPressureWait bounds how long the worker waits for one congested
// subscriber after a batch.
const maxBackPressureWait = time.Second

// maxPipeline bounds the queued PUBLISH packets of one connection; the
// reader waits (stops reading the socket) when it is full.
const maxPipeline = 4096

type pipeItem struct {
	m   *storage.Message // nil: a resent QoS 2 PUBLISH, answer PUBREC only
	id  uint16           // the PUBLISH's packet identifier and QoS: the
	qos byte             // packet itself is the reader's, reused (ReusePackets)
	dup bool
}

type pipeline struct {
	mu      sync.Mutex
	cond    sync.Cond // on mu: the worker finished a batch or stopped
	items   []pipeItem
	spare   []pipeItem
	running bool
	pending int            // QoS > 0 items queued or in the worker's batch
	qos2    map[uint16]int // QoS 2 packet ids queued or in the batch
}

// pipeIdle reports whether nothing is queued or being published.
func (c *client) pipeIdle() bool {
	c.pipe.mu.Lock()
	defer c.pipe.mu.Unlock()
	return !c.pipe.running
}

// pipePending returns the number of accepted, unacknowledged QoS > 0
// PUBLISH packets, and whether a QoS 2 PUBLISH with id is among them.
func (c *client) pipePending(id uint16) (n int, qos2 bool) {
	c.pipe.mu.Lock()
	defer c.pipe.mu.Unlock()
	return c.pipe.pending, c.pipe.qos2[id] > 0
}

// pipeEnqueue queues it for the worker, starting the worker if it is not
// running, and waits while the pipeline is full.
func (c *client) pipeEnqueue(it pipeItem) {
	pl := &c.pipe
	pl.mu.Lock()
	if pl.cond.L == nil {
		pl.cond.L = &pl.mu
	}
	for len(pl.items) >= maxPipeline {
		pl.cond.Wait()
	}
	pl.items = append(pl.items, it)
	if it.qos > 0 {
		pl.pending++
		if it.qos == 2 && !it.dup {
			if pl.qos2 == nil {
				pl.qos2 = make(map[uint16]int)
			}
			pl.qos2[it.id]++
		}
	}
	if !pl.running {
		pl.running = true
		go c.pipeRun()
	}
	pl.mu.Unlock()
}

// pipeWait blocks until the pipeline is empty and its worker stopped.
func (c *client) pipeWait() {
	pl := &c.pipe
	pl.mu.Lock()
	if pl.cond.L == nil {
		pl.cond.L = &pl.mu
	}
	for pl.running {
		pl.cond.Wait()
	}
	pl.mu.Unlock()
}

// pipeRun is the worker: it publishes batches until the queue is empty.
func (c *client) pipeRun() {
	pl := &c.pipe
	defer func() {
		// As in readLoop: a bug must not take the broker down. The queued
		// messages are not acknowledged; the client sends them again.
		if r := recover(); r != nil {
			c.log.Error("panic publishing", "panic", r, "stack", string(debug.Stack()))
			pl.mu.Lock()
			pl.items, pl.pending, pl.qos2, pl.running = nil, 0, nil, false
			pl.cond.Broadcast()
			pl.mu.Unlock()
			c.kick(packets.ImplementationSpecificError)
		}
	}()
	var msgs []*storage.Message // reused for each batch's append
	for {
		pl.mu.Lock()
		if len(pl.items) == 0 {
			pl.running = false
			pl.cond.Broadcast()
			pl.mu.Unlock()
			return
		}
		batch := pl.items
		pl.items = pl.spare[:0]
		pl.cond.Broadcast() // room for the reader
		pl.mu.Unlock()

		var cg congested
		cg, msgs = c.publishBatch(batch, msgs[:0])
		clear(msgs)

		pl.mu.Lock()
		clear(batch) // each item left pending in publishBatch (pipeDone)
		pl.spare = batch[:0]
		pl.mu.Unlock()
		if cg.sess != nil {
			// Back pressure: wait for the congested subscriber before
			// taking more of this client's messages (session/congestion.go).
			// The batch is acknowledged and no longer pending, so the
			// client's inflight quota is free; the reader goes on queueing
			// what the client sends until the pipeline is full.
			c.srv.stats.BackPressureWaits.Add(1)
			cg.sess.WaitUncongested(maxBackPressureWait)
		}
	}
}

// publishBatch appends the batch's QoS 1/2 messages in one call, then
// routes and acknowledges every item in order. A failed append refuses all
// of them as handlePublish would refuse one. msgs is space for the
// append's list, returned for the next batch.
func (c *client) publishBatch(batch []pipeItem, msgs []*storage.Message) (cg congested, _ []*storage.Message) {
	s := c.srv
	for i := range batch {
		if it := &batch[i]; !it.dup && it.m.QoS > 0 {
			msgs = append(msgs, it.m)
		}
	}
	s.gcMu.RLock()
	defer s.gcMu.RUnlock()
	var appendErr error
	if len(msgs) > 0 {
		appendErr = s.appendLog(msgs...)
	}
	for i := range batch {
		it := &batch[i]
		if it.dup {
			// [MQTT-4.3.3-10]: acknowledged again, not delivered again.
			c.pipeDone(it)
			_ = c.sendAck(packets.TypePubrec, it.id, packets.Success)
			continue
		}
		err := appendErr
		if it.m.QoS == 0 {
			err = nil
		}
		if err == nil {
			_, err = s.publishAppended(it.m, &cg)
		}
		if err != nil {
			c.log.Warn("storing PUBLISH failed", "topic", it.m.Topic, "err", err)
			if it.m.QoS == 0 {
				continue // counted in StorageErrors
			}
			if c.version != packets.V5 {
				// 3.1.1 cannot refuse a PUBLISH: close without acknowledging
				// so the client sends it again.
				c.pipeDone(it)
				c.kick(packets.UnspecifiedError)
				continue
			}
			rc := packets.UnspecifiedError
			if errors.Is(err, storage.ErrFull) {
				rc = packets.QuotaExceeded
			}
			c.pipeAck(it, rc)
			continue
		}
		c.pipeAck(it, packets.Success)
	}
	return cg, msgs
}

// pipeAck acknowledges a published pipeline item with rc. The item stops
// counting against the server's Receive Maximum just before its
// acknowledgement goes out — after a QoS 2 identifier entered the
// session's inbound set, which counts it from then on — because a client
// may send its next PUBLISH as soon as it has the acknowledgement; were
// the batch's items released only after the whole batch, a client with a
// full window would be counted twice and disconnected with 0x93.
func (c *client) pipeAck(it *pipeItem, rc packets.ReasonCode) {
	rc = c.recordPublishAck(it.qos, it.id, rc)
	c.pipeDone(it)
	_ = c.writePublishAck(it.qos, it.id, rc)
}

// pipeDone releases it from the pipeline's pending count and QoS 2
// identifiers.
func (c *client) pipeDone(it *pipeItem) {
	if it.qos == 0 {
		return
	}
	pl := &c.pipe
	pl.mu.Lock()
	pl.pending--
	if it.qos == 2 && !it.dup {
		if pl.qos2[it.id]--; pl.qos2[it.id] <= 0 {
			delete(pl.qos2, it.id)
		}
	}
	pl.mu.Unlock()
}
