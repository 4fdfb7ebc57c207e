package packets

import (
	"bytes"
	"reflect"
	"testing"

	paho "github.com/eclipse/paho.golang/packets"
)

// pahoLimits lists golden packets paho.golang v0.23 cannot carry whole,
// with the reason; each was checked by hand against the 5.0 text.
var pahoLimits = map[string]string{
	"CONNECT 5.0 spec variable header example (Session Expiry 10) with all Will Properties": "paho writes only Will Delay and User Properties of the Will Properties",
	"PUBLISH 5.0 every PUBLISH property, two subscription identifiers":                      "paho keeps a single Subscription Identifier per PUBLISH (5.0 §3.3.4 allows several)",
	"DISCONNECT 5.0 normal, everything omitted":                                             "paho cannot read a DISCONNECT with remaining length 0 (allowed by 5.0 §3.14.2.1)",
}

// TestPahoCrossCheck runs every 5.0 golden packet through an independent
// codec (paho.golang's packets, a client library) and back: paho must
// accept our bytes, and what paho writes must decode to the same packet.
func TestPahoCrossCheck(t *testing.T) {
	for _, g := range goldens {
		if g.v != V5 || g.decodeOnly {
			continue
		}
		t.Run(g.name, func(t *testing.T) {
			if why, ok := pahoLimits[g.name]; ok {
				t.Skip(why)
			}
			cp, err := paho.ReadPacket(bytes.NewReader(g.raw))
			if err != nil {
				t.Fatalf("paho cannot read our bytes % x: %v", g.raw, err)
			}
			var buf bytes.Buffer
			if _, err := cp.WriteTo(&buf); err != nil {
				t.Fatalf("paho WriteTo: %v", err)
			}
			p, n, err := Decode(buf.Bytes(), V5)
			if err != nil || n != buf.Len() {
				t.Fatalf("decode paho's % x: n=%d %v", buf.Bytes(), n, err)
			}
			if !reflect.DeepEqual(p, g.pkt) {
				t.Errorf("paho's bytes % x decode to\n%#v\nwant\n%#v", buf.Bytes(), p, g.pkt)
			}
		})
	}
}
