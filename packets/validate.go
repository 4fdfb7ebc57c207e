package packets

import (
	"strings"
	"unicode/utf8"
)

// ValidUTF8String reports whether s obeys the UTF-8 Encoded String rules
// (5.0 §1.5.4, 3.1.1 §1.5.3): well-formed UTF-8 without surrogate code
// points [MQTT-1.5.4-1] [MQTT-1.5.3-1] (Go's decoder refuses encoded
// surrogates and overlong forms) and without U+0000 [MQTT-1.5.4-2]
// [MQTT-1.5.3-2]. It does not check the 65,535-byte length limit.
func ValidUTF8String(s string) bool {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c == 0 {
				return false
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			return false
		}
		i += n
	}
	return true
}

func topicErr(code ReasonCode, detail string) error {
	return &Error{Code: code, Detail: detail}
}

// ValidTopicName checks a PUBLISH (or Will) topic name: at least one byte
// [MQTT-4.7.3-1], at most 65,535 bytes [MQTT-4.7.3-3], a valid UTF-8 string
// without U+0000 [MQTT-4.7.3-2], and no wildcard characters
// [MQTT-3.3.2-2] [MQTT-4.7.0-1] [MQTT-4.7.1-1]. A failure is an *Error with
// Code TopicNameInvalid. (5.0 also allows an empty topic name together
// with a Topic Alias; callers decide that case before calling.)
func ValidTopicName(s string) error {
	if s == "" {
		return topicErr(TopicNameInvalid, "empty topic name")
	}
	if len(s) > 65535 {
		return topicErr(TopicNameInvalid, "topic name longer than 65535 bytes")
	}
	if strings.IndexByte(s, '+') >= 0 || strings.IndexByte(s, '#') >= 0 {
		return topicErr(TopicNameInvalid, "wildcard character in topic name")
	}
	if !ValidUTF8String(s) {
		return topicErr(TopicNameInvalid, "topic name is not a valid UTF-8 string")
	}
	return nil
}

// ValidTopicFilter checks a SUBSCRIBE/UNSUBSCRIBE topic filter: at least one
// byte [MQTT-4.7.3-1], at most 65,535 [MQTT-4.7.3-3], valid UTF-8 without
// U+0000 [MQTT-4.7.3-2]; '#' only as the whole last level [MQTT-4.7.1-2]
// (3.1.1) [MQTT-4.7.1-1] (5.0); '+' only as a whole level [MQTT-4.7.1-3]
// (3.1.1) [MQTT-4.7.1-2] (5.0). A filter starting with "$share/" must also
// be a well-formed shared subscription (see ParseShared). A failure is an
// *Error with Code TopicFilterInvalid.
func ValidTopicFilter(s string) error {
	if _, _, shared, err := ParseShared(s); shared || err != nil {
		return err
	}
	return validPlainFilter(s)
}

func validPlainFilter(s string) error {
	if s == "" {
		return topicErr(TopicFilterInvalid, "empty topic filter")
	}
	if len(s) > 65535 {
		return topicErr(TopicFilterInvalid, "topic filter longer than 65535 bytes")
	}
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '#':
			if i != len(s)-1 {
				return topicErr(TopicFilterInvalid, "'#' is not the last character")
			}
			if i > 0 && s[i-1] != '/' {
				return topicErr(TopicFilterInvalid, "'#' does not follow a '/'")
			}
		case '+':
			if (i > 0 && s[i-1] != '/') || (i < len(s)-1 && s[i+1] != '/') {
				return topicErr(TopicFilterInvalid, "'+' does not occupy a whole level")
			}
		}
	}
	if !ValidUTF8String(s) {
		return topicErr(TopicFilterInvalid, "topic filter is not a valid UTF-8 string")
	}
	return nil
}

// SharePrefix starts every shared subscription filter (5.0 §4.8.2).
const SharePrefix = "$share/"

// ParseShared splits a shared subscription filter "$share/{group}/{filter}"
// (5.0 §4.8.2). For a filter without the "$share/" prefix it returns
// shared == false, sub == filter and no error (the filter itself is not
// checked then). For a shared one it checks that the ShareName is at least
// one character [MQTT-4.8.2-1], holds no '/', '+' or '#', and is followed by
// '/' and a valid topic filter [MQTT-4.8.2-2]; a failure is an *Error with
// Code TopicFilterInvalid and shared == true.
func ParseShared(filter string) (group, sub string, shared bool, err error) {
	if !strings.HasPrefix(filter, SharePrefix) {
		return "", filter, false, nil
	}
	rest := filter[len(SharePrefix):]
	slash := strings.IndexByte(rest, '/')
	if slash < 0 {
		return "", "", true, topicErr(TopicFilterInvalid, "shared subscription has no topic filter after the share name")
	}
	group, sub = rest[:slash], rest[slash+1:]
	if group == "" {
		return "", "", true, topicErr(TopicFilterInvalid, "empty share name") // [MQTT-4.8.2-1]
	}
	if strings.ContainsAny(group, "+#") {
		return "", "", true, topicErr(TopicFilterInvalid, "share name contains a wildcard") // [MQTT-4.8.2-2]
	}
	if sub == "" {
		return "", "", true, topicErr(TopicFilterInvalid, "shared subscription has an empty topic filter") // [MQTT-4.8.2-2]
	}
	if err := validPlainFilter(filter); err != nil { // the whole string, so length and UTF-8 cover the share name too
		return "", "", true, err
	}
	return group, sub, true, nil
}
