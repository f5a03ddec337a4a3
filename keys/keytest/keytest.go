// Package keytest makes the key files that tests of several packages need
// and keys/ deliberately cannot make: another copy of a key (a new
// subkey, as a renewal adds a self-signature) and a revoked copy.
package keytest

import (
	"bytes"

	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	openpgp "github.com/ProtonMail/go-crypto/openpgp/v2"

	"github.com/airlock-project/airlock/keys"
)

// EditedPublic returns the armored public key of k after edit changed its
// OpenPGP entity.
func EditedPublic(k *keys.PrivateKey, edit func(*openpgp.Entity) error) ([]byte, error) {
	var priv bytes.Buffer
	if err := k.WriteArmored(&priv, nil); err != nil {
		return nil, err
	}
	el, err := openpgp.ReadArmoredKeyRing(&priv)
	if err != nil {
		return nil, err
	}
	if err := edit(el[0]); err != nil {
		return nil, err
	}
	var out bytes.Buffer
	w, err := armor.Encode(&out, openpgp.PublicKeyType, nil)
	if err != nil {
		return nil, err
	}
	if err := el[0].Serialize(w); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// RevokedPublic returns the armored public key of k, revoked by k as
// compromised.
func RevokedPublic(k *keys.PrivateKey) ([]byte, error) {
	return EditedPublic(k, func(e *openpgp.Entity) error {
		return e.Revoke(packet.KeyCompromised, "laptop stolen", nil)
	})
}

// RenewedPublic returns another copy of k's public key: the same primary
// key with a new signing subkey, as an owner's update would publish.
func RenewedPublic(k *keys.PrivateKey) ([]byte, error) {
	return EditedPublic(k, func(e *openpgp.Entity) error { return e.AddSigningSubkey(nil) })
}
