package auth

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"

	"github.com/libp2p/go-libp2p/core/pnet"
)

// PSKLen is the length of a libp2p private network key.
const PSKLen = 32

// GeneratePSK returns a new random private network key.
func GeneratePSK() (pnet.PSK, error) {
	psk := make(pnet.PSK, PSKLen)
	if _, err := rand.Read(psk); err != nil {
		return nil, fmt.Errorf("auth: generate psk: %w", err)
	}
	return psk, nil
}

// EncodePSK returns psk in the libp2p swarm.key format (v1, base16), which
// go-ipfs and kubo use too.
func EncodePSK(psk pnet.PSK) []byte {
	return []byte("/key/swarm/psk/1.0.0/\n/base16/\n" + hex.EncodeToString(psk) + "\n")
}

// ParsePSK decodes a swarm.key file (v1: base16, base64 or bin). It
// refuses input over maxCredentialFile bytes, and a key whose text goes on
// past the 32 bytes (other than white space), so that a truncated or
// concatenated file is not silently accepted.
func ParsePSK(b []byte) (pnet.PSK, error) {
	if len(b) > maxCredentialFile {
		return nil, fmt.Errorf("%w: over %d bytes", ErrBadPSK, maxCredentialFile)
	}
	psk, err := pnet.DecodeV1PSK(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadPSK, err)
	}
	if len(psk) != PSKLen {
		return nil, fmt.Errorf("%w: %d bytes, want %d", ErrBadPSK, len(psk), PSKLen)
	}
	// What follows the two header lines must be exactly the key: check
	// the text form for the encodings that have one.
	lines := bytes.SplitN(b, []byte("\n"), 3)
	if len(lines) == 3 && !bytes.Equal(bytes.TrimRight(lines[1], "\r"), []byte("/bin/")) {
		body := bytes.TrimSpace(lines[2])
		if len(body) != 2*PSKLen && !bytes.Equal(bytes.TrimRight(lines[1], "\r"), []byte("/base64/")) {
			return nil, fmt.Errorf("%w: the key is %d characters, want %d hex digits", ErrBadPSK, len(body), 2*PSKLen)
		}
		if bytes.ContainsAny(body, " \t\r\n") {
			return nil, fmt.Errorf("%w: text after the key", ErrBadPSK)
		}
	}
	if bytes.Count(psk, []byte{0}) == PSKLen {
		return nil, fmt.Errorf("%w: the key is all zeros", ErrBadPSK)
	}
	return psk, nil
}

// LoadPSK reads and checks the private network key in path.
func LoadPSK(path string) (pnet.PSK, error) {
	b, err := readSmall(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadPSK, err)
	}
	psk, err := ParsePSK(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return psk, nil
}
