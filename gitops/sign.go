package gitops

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/hiddeco/sshsig"
	"golang.org/x/crypto/ssh"
)

// Signer signs the commits fleetwave writes (promotions, reverts, evidence): given a commit
// encoded without its signature, it returns the armored signature git keeps in the commit's
// gpgsig header.
type Signer interface {
	Sign(message []byte) ([]byte, error)
	// Format is git's gpg.format for the signature: "ssh" or "openpgp".
	Format() string
}

// WithSigner signs every commit the repo writes with s.
func WithSigner(s Signer) Option { return func(o *options) { o.signer = s } }

// LoadSigner reads a signing key: an OpenSSH private key (signatures in git's SSH format,
// `gpg.format=ssh`, namespace "git") or an armored OpenPGP private key. The key must not be
// protected by a passphrase: the worker signs unattended. It signs a test message, so a key
// that cannot sign fails here, naming file, and not at the first promotion.
func LoadSigner(file string) (Signer, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	var s Signer
	switch {
	case bytes.Contains(data, []byte("-----BEGIN PGP PRIVATE KEY BLOCK-----")):
		s, err = openPGPSigner(data)
	case bytes.Contains(data, []byte("-----BEGIN OPENSSH PRIVATE KEY-----")), bytes.Contains(data, []byte("PRIVATE KEY-----")):
		s, err = sshSigner(data)
	default:
		err = errors.New("neither an OpenSSH private key nor an armored OpenPGP private key")
	}
	if err == nil {
		_, err = s.Sign([]byte("fleetwave signing check\n"))
	}
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", file, err)
	}
	return s, nil
}

type sshKey struct{ signer ssh.Signer }

func sshSigner(data []byte) (Signer, error) {
	signer, err := ssh.ParsePrivateKey(data)
	var missing *ssh.PassphraseMissingError
	if errors.As(err, &missing) {
		return nil, errors.New("the key is protected by a passphrase; the worker signs unattended: give it a key without one, kept as a secret")
	}
	if err != nil {
		return nil, err
	}
	return sshKey{signer}, nil
}

func (k sshKey) Format() string { return "ssh" }

func (k sshKey) Sign(message []byte) ([]byte, error) {
	sig, err := sshsig.Sign(bytes.NewReader(message), k.signer, sshsig.HashSHA512, "git")
	if err != nil {
		return nil, err
	}
	return sshsig.Armor(sig), nil
}

type openPGPKey struct{ entity *openpgp.Entity }

func openPGPSigner(data []byte) (Signer, error) {
	keys, err := openpgp.ReadArmoredKeyRing(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	if len(keys) != 1 {
		return nil, fmt.Errorf("the file holds %d keys; give it one", len(keys))
	}
	e := keys[0]
	if e.PrivateKey == nil {
		return nil, errors.New("the file holds a public key, not a private one")
	}
	if e.PrivateKey.Encrypted {
		return nil, errors.New("the key is protected by a passphrase; the worker signs unattended: give it a key without one, kept as a secret")
	}
	return openPGPKey{e}, nil
}

func (k openPGPKey) Format() string { return "openpgp" }

func (k openPGPKey) Sign(message []byte) ([]byte, error) {
	var b bytes.Buffer
	if err := openpgp.ArmoredDetachSign(&b, k.entity, bytes.NewReader(message), nil); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// sign sets the commit's signature: s's signature of the commit encoded without one.
func sign(s Signer, c *object.Commit) error {
	o := &plumbing.MemoryObject{}
	if err := c.EncodeWithoutSignature(o); err != nil {
		return err
	}
	rd, err := o.Reader()
	if err != nil {
		return err
	}
	defer rd.Close()
	msg, err := io.ReadAll(rd)
	if err != nil {
		return err
	}
	sig, err := s.Sign(msg)
	if err != nil {
		return fmt.Errorf("sign commit: %w", err)
	}
	c.PGPSignature = strings.TrimRight(string(sig), "\n") + "\n"
	return nil
}
