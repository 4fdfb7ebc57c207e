package session

// flightList is the outbound inflight window in send order
// [MQTT-4.6.0-1]. Acknowledgements normally arrive in send order, and a
// window can be as large as the client's Receive Maximum (65535), so
// removing a delivery must not shift the ones after it: a completed
// delivery leaves a nil hole, the head advances over holes, and the slice
// is compacted once the dead prefix is large. Each delivery remembers its
// position (Delivery.fpos, counted from the list's creation), so removal
// is O(1) wherever the delivery is.
type flightList struct {
	items []*Delivery // send order; nil = completed
	head  int         // index of the first slot that may be live
	base  int         // position of items[0]
	n     int         // live deliveries
}

// Len returns the number of deliveries in flight.
func (f *flightList) Len() int { return f.n }

// Push appends d (just sent) at the end of the window.
func (f *flightList) Push(d *Delivery) {
	d.fpos = f.base + len(f.items)
	f.items = append(f.items, d)
	f.n++
}

// Remove takes d out of the window; it reports false if d is not in it.
func (f *flightList) Remove(d *Delivery) bool {
	i := d.fpos - f.base
	if i < f.head || i >= len(f.items) || f.items[i] != d {
		return false
	}
	f.items[i] = nil
	f.n--
	if f.n == 0 {
		clear(f.items[f.head:])
		f.base += len(f.items)
		f.items, f.head = f.items[:0], 0
		return true
	}
	for f.items[f.head] == nil {
		f.head++
	}
	if f.head > 1024 && f.head > len(f.items)/2 {
		k := copy(f.items, f.items[f.head:])
		clear(f.items[k:])
		f.items = f.items[:k]
		f.base += f.head
		f.head = 0
	}
	return true
}

// All returns the deliveries in flight in send order, in a new slice.
func (f *flightList) All() []*Delivery {
	out := make([]*Delivery, 0, f.n)
	for _, d := range f.items[f.head:] {
		if d != nil {
			out = append(out, d)
		}
	}
	return out
}

// Each calls fn for every delivery in flight, in send order. fn must not
// change the list.
func (f *flightList) Each(fn func(d *Delivery)) {
	for _, d := range f.items[f.head:] {
		if d != nil {
			fn(d)
		}
	}
}

// Reset empties the list.
func (f *flightList) Reset() {
	f.base += len(f.items)
	f.items, f.head, f.n = nil, 0, 0
}
