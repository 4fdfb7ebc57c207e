package mqtt

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/beaconmq/beacon/packets"
)

// SCRAM-SHA-256 (RFC 7677, the SCRAM mechanism of RFC 5802) as a 5.0
// enhanced authentication method. The client proves that it knows the
// password without sending it, and the server proves that it holds the
// user's credentials; the server stores only the salt, iteration count,
// StoredKey and ServerKey, never the password. The MQTT mapping is:
//
//	CONNECT   Authentication Method "SCRAM-SHA-256", Data client-first-message
//	AUTH 0x18 (server) server-first-message
//	AUTH 0x18 (client) client-final-message
//	CONNACK   0x00 with Data server-final-message ("v=...")
//
// Re-authentication runs the same exchange starting with AUTH 0x19.
// Channel binding is not supported (gs2 flags "n" and "y" only); user
// names and passwords are used as UTF-8 bytes without SASLprep.

// SCRAMSHA256 is the Authentication Method name of SCRAM-SHA-256.
const SCRAMSHA256 = "SCRAM-SHA-256"

// SCRAMIterations is the PBKDF2 iteration count NewSCRAMHash uses by
// default: the minimum RFC 7677 recommends.
const SCRAMIterations = 4096

// scramPrefix starts a SCRAM credential in a password file:
// $scram-sha-256$ITERATIONS$SALT$STOREDKEY$SERVERKEY, base64 (standard,
// padded).
const scramPrefix = "$scram-sha-256$"

// scramCredential is what the server keeps of one user's password.
type scramCredential struct {
	iter                 int
	salt                 []byte
	storedKey, serverKey []byte
}

// NewSCRAMHash returns the password file hash of password for
// SCRAM-SHA-256 with a fresh random salt and iterations PBKDF2 rounds
// (SCRAMIterations when 0). Such an entry authenticates both a plain
// CONNECT with user name and password and a SCRAM exchange.
func NewSCRAMHash(password string, iterations int) (string, error) {
	if iterations == 0 {
		iterations = SCRAMIterations
	}
	if iterations < 4096 || iterations > 10_000_000 {
		return "", fmt.Errorf("SCRAM iterations %d: use 4096 to 10000000", iterations)
	}
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	c, err := deriveSCRAM(password, salt, iterations)
	if err != nil {
		return "", err
	}
	b := base64.StdEncoding
	return scramPrefix + strconv.Itoa(iterations) + "$" + b.EncodeToString(salt) + "$" +
		b.EncodeToString(c.storedKey) + "$" + b.EncodeToString(c.serverKey), nil
}

// deriveSCRAM computes the stored credential of password (RFC 5802 §3).
func deriveSCRAM(password string, salt []byte, iter int) (*scramCredential, error) {
	salted, err := pbkdf2.Key(sha256.New, password, salt, iter, sha256.Size)
	if err != nil {
		return nil, err
	}
	clientKey := hmacSHA256(salted, "Client Key")
	stored := sha256.Sum256(clientKey)
	return &scramCredential{iter: iter, salt: salt, storedKey: stored[:], serverKey: hmacSHA256(salted, "Server Key")}, nil
}

func hmacSHA256(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// parseSCRAM reads a $scram-sha-256$ hash written by NewSCRAMHash.
func parseSCRAM(h string) (*scramCredential, error) {
	parts := strings.Split(strings.TrimPrefix(h, scramPrefix), "$")
	if len(parts) != 4 {
		return nil, errors.New("SCRAM hash: want $scram-sha-256$ITERATIONS$SALT$STOREDKEY$SERVERKEY")
	}
	iter, err := strconv.Atoi(parts[0])
	if err != nil || iter < 1 || iter > 10_000_000 {
		return nil, fmt.Errorf("SCRAM hash: bad iteration count %q", parts[0])
	}
	c := &scramCredential{iter: iter}
	for i, dst := range []*[]byte{&c.salt, &c.storedKey, &c.serverKey} {
		b, err := base64.StdEncoding.DecodeString(parts[i+1])
		if err != nil || len(b) == 0 || i > 0 && len(b) != sha256.Size {
			return nil, fmt.Errorf("SCRAM hash: field %d is not valid base64 of the right length", i+2)
		}
		*dst = b
	}
	return c, nil
}

// verifyPassword reports whether password matches c (a plain CONNECT to a
// user with a SCRAM entry).
func (c *scramCredential) verifyPassword(password []byte) bool {
	d, err := deriveSCRAM(string(password), c.salt, c.iter)
	return err == nil && subtle.ConstantTimeCompare(d.storedKey, c.storedKey) == 1
}

// scramServer is the server side of one SCRAM-SHA-256 exchange.
type scramServer struct {
	f     *PasswordFile
	state int // 0: want client-first, 1: want client-final, 2: done

	user            string
	cred            *scramCredential // nil: unknown user (fails at the proof)
	gs2             string           // the gs2 header, echoed in c= of client-final
	clientFirstBare string
	serverFirst     string
	nonce           string // client nonce + server nonce
}

// scramError refuses a SCRAM message that is not well formed.
func scramError(format string, args ...any) error {
	return fmt.Errorf("%w: SCRAM: %s", ErrNotAuthorized, fmt.Sprintf(format, args...))
}

// Step implements AuthExchange.
func (x *scramServer) Step(data []byte) (AuthStep, error) {
	switch x.state {
	case 0:
		return x.first(string(data))
	case 1:
		return x.final(string(data))
	}
	return AuthStep{}, packets.ProtocolError
}

// first takes client-first-message: gs2-header client-first-bare, e.g.
// "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL", and answers server-first-message
// "r=NONCE,s=SALT,i=4096".
func (x *scramServer) first(msg string) (AuthStep, error) {
	cb, rest, ok1 := strings.Cut(msg, ",")
	authz, bare, ok2 := strings.Cut(rest, ",")
	if !ok1 || !ok2 {
		return AuthStep{}, scramError("client-first-message without a gs2 header")
	}
	if cb != "n" && cb != "y" {
		return AuthStep{}, scramError("channel binding is not supported")
	}
	if authz != "" {
		return AuthStep{}, scramError("an authorization identity is not supported")
	}
	x.gs2 = cb + ",,"
	attrs := strings.Split(bare, ",")
	if len(attrs) < 2 || !strings.HasPrefix(attrs[0], "n=") || !strings.HasPrefix(attrs[1], "r=") {
		return AuthStep{}, scramError("client-first-message needs n= and r=") // also refuses the m= extension
	}
	user, err := scramName(attrs[0][2:])
	if err != nil {
		return AuthStep{}, err
	}
	cnonce := attrs[1][2:]
	if cnonce == "" || !printableNonce(cnonce) {
		return AuthStep{}, scramError("bad client nonce")
	}
	var snonce [18]byte
	if _, err := rand.Read(snonce[:]); err != nil {
		return AuthStep{}, err
	}
	x.user = user
	x.clientFirstBare = bare
	x.nonce = cnonce + base64.StdEncoding.EncodeToString(snonce[:])
	salt, iter := x.f.scramSalt(user)
	x.cred = x.f.scramCredential(user)
	x.serverFirst = "r=" + x.nonce + ",s=" + base64.StdEncoding.EncodeToString(salt) + ",i=" + strconv.Itoa(iter)
	x.state = 1
	return AuthStep{Data: []byte(x.serverFirst)}, nil
}

// final takes client-final-message "c=biws,r=NONCE,p=PROOF", checks the
// proof and answers server-final-message "v=SIGNATURE".
func (x *scramServer) final(msg string) (AuthStep, error) {
	x.state = 2
	i := strings.LastIndex(msg, ",p=")
	if i < 0 {
		return AuthStep{}, scramError("client-final-message without a proof")
	}
	withoutProof, proofB64 := msg[:i], msg[i+3:]
	attrs := strings.Split(withoutProof, ",")
	if len(attrs) < 2 || attrs[0] != "c="+base64.StdEncoding.EncodeToString([]byte(x.gs2)) {
		return AuthStep{}, scramError("channel binding data does not match the gs2 header")
	}
	if attrs[1] != "r="+x.nonce {
		return AuthStep{}, scramError("nonce does not match")
	}
	proof, err := base64.StdEncoding.DecodeString(proofB64)
	if err != nil || len(proof) != sha256.Size {
		return AuthStep{}, scramError("bad proof encoding")
	}
	if x.cred == nil {
		return AuthStep{}, ErrBadCredentials // unknown user, or one without a SCRAM credential
	}
	authMessage := x.clientFirstBare + "," + x.serverFirst + "," + withoutProof
	sig := hmacSHA256(x.cred.storedKey, authMessage)
	clientKey := make([]byte, len(proof))
	subtle.XORBytes(clientKey, proof, sig)
	stored := sha256.Sum256(clientKey)
	if subtle.ConstantTimeCompare(stored[:], x.cred.storedKey) != 1 {
		return AuthStep{}, ErrBadCredentials
	}
	serverSig := hmacSHA256(x.cred.serverKey, authMessage)
	return AuthStep{Data: []byte("v=" + base64.StdEncoding.EncodeToString(serverSig)), Done: true, Username: x.user}, nil
}

// scramName decodes a saslname: "=2C" is ',' and "=3D" is '='; any other
// '=' is an error (RFC 5802 §5.1).
func scramName(s string) (string, error) {
	if !strings.Contains(s, "=") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '=' {
			b.WriteByte(s[i])
			continue
		}
		switch {
		case strings.HasPrefix(s[i:], "=2C"):
			b.WriteByte(',')
		case strings.HasPrefix(s[i:], "=3D"):
			b.WriteByte('=')
		default:
			return "", scramError("bad user name encoding")
		}
		i += 2
	}
	return b.String(), nil
}

// printableNonce reports whether s is printable ASCII without ','.
func printableNonce(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e || s[i] == ',' {
			return false
		}
	}
	return true
}
