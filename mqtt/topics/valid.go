package topics

import (
	"errors"
	"strings"
)

// Errors returned by ValidFilter and ValidTopic.
var (
	ErrEmpty       = errors.New("topics: empty topic or filter")
	ErrTooLong     = errors.New("topics: longer than 65535 bytes")
	ErrNull        = errors.New("topics: contains U+0000")
	ErrWildcard    = errors.New("topics: wildcard in a topic name")
	ErrMultiLevel  = errors.New("topics: '#' must be a whole level and the last one")
	ErrSingleLevel = errors.New("topics: '+' must be a whole level")
	ErrShare       = errors.New("topics: shared filter must be $share/{name}/{filter}, name without /+#")
)

const maxTopicLen = 65535

// ValidTopic checks a topic name as published: non-empty, at most 65535
// bytes, no U+0000 and no wildcard characters. It does not check UTF-8
// well-formedness, which the packet decoder does.
func ValidTopic(topic string) error {
	switch {
	case topic == "":
		return ErrEmpty // [MQTT-4.7.3-1]
	case len(topic) > maxTopicLen:
		return ErrTooLong // [MQTT-4.7.3-3]
	case strings.IndexByte(topic, 0) >= 0:
		return ErrNull // [MQTT-4.7.3-2]
	case strings.ContainsAny(topic, "+#"):
		return ErrWildcard // 3.1.1 [MQTT-4.7.1-1], 5.0 [MQTT-4.7.0-1]
	}
	return nil
}

// ValidFilter checks a topic filter, including a shared one
// ($share/{name}/{filter}): non-empty, at most 65535 bytes, no U+0000, '#'
// only as the whole last level and '+' only as a whole level.
func ValidFilter(filter string) error {
	switch {
	case filter == "":
		return ErrEmpty // [MQTT-4.7.3-1]
	case len(filter) > maxTopicLen:
		return ErrTooLong // [MQTT-4.7.3-3]
	case strings.IndexByte(filter, 0) >= 0:
		return ErrNull // [MQTT-4.7.3-2]
	}
	if strings.HasPrefix(filter, SharePrefix) {
		_, inner, ok := ParseShared(filter)
		if !ok {
			return ErrShare // [MQTT-4.8.2-1] [MQTT-4.8.2-2]
		}
		filter = inner
	}
	for rest, more := filter, true; more; {
		var tok string
		tok, rest, more = cut(rest)
		if strings.IndexByte(tok, '#') >= 0 && (tok != "#" || more) {
			return ErrMultiLevel // 3.1.1 [MQTT-4.7.1-2], 5.0 [MQTT-4.7.1-1]
		}
		if strings.IndexByte(tok, '+') >= 0 && tok != "+" {
			return ErrSingleLevel // 3.1.1 [MQTT-4.7.1-3], 5.0 [MQTT-4.7.1-2]
		}
	}
	return nil
}
