package peer

import (
	"bytes"
	"crypto/rand"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
)

// FuzzParseIdentity: an identity file, however damaged, gives a key or an
// ErrIdentity, and a key that parses marshals back to a key with the same
// peer ID.
func FuzzParseIdentity(f *testing.F) {
	for _, gen := range []func() (crypto.PrivKey, crypto.PubKey, error){
		func() (crypto.PrivKey, crypto.PubKey, error) { return crypto.GenerateEd25519Key(rand.Reader) },
		func() (crypto.PrivKey, crypto.PubKey, error) { return crypto.GenerateSecp256k1Key(rand.Reader) },
		func() (crypto.PrivKey, crypto.PubKey, error) { return crypto.GenerateECDSAKeyPair(rand.Reader) },
	} {
		k, _, err := gen()
		if err != nil {
			f.Fatal(err)
		}
		b, err := crypto.MarshalPrivateKey(k)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0x08, 0x01, 0x12, 0x40})
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := parseIdentity(b)
		if err != nil {
			return
		}
		again, err := crypto.MarshalPrivateKey(k)
		if err != nil {
			return // a key type libp2p reads but does not write
		}
		k2, err := parseIdentity(again)
		if err != nil || !bytes.Equal(mustRaw(t, k.GetPublic()), mustRaw(t, k2.GetPublic())) {
			t.Fatalf("re-parse: %v", err)
		}
	})
}

func mustRaw(t *testing.T, k crypto.PubKey) []byte {
	b, err := crypto.MarshalPublicKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
