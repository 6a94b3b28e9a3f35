package gitops

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
)

// TestSignedCommits: with a signing key, the promotion and its revert are signed, and the git
// CLI verifies them: SSH signatures against an allowed-signers file (gpg.format=ssh), OpenPGP
// ones with gpg. An unsigned commit does not verify, so the check proves something.
func TestSignedCommits(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	sshKey := filepath.Join(dir, "id_ed25519")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "fleetwave", "-f", sshKey).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	pub, err := os.ReadFile(sshKey + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	allowed := filepath.Join(dir, "allowed_signers")
	if err := os.WriteFile(allowed, []byte(`fw@example.com namespaces="git" `+string(pub)), 0o600); err != nil {
		t.Fatal(err)
	}
	pgpKey, pgpPub := openPGPKeyFiles(t, dir)
	gnupg := filepath.Join(dir, "gnupg")
	if err := os.Mkdir(gnupg, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("gpg", "--homedir", gnupg, "--batch", "--import", pgpPub).CombinedOutput(); err != nil {
		t.Fatalf("gpg --import: %v: %s", err, out)
	}

	for _, tt := range []struct {
		name, key string
		verify    func(bare, sha string) (string, error)
	}{
		{"ssh", sshKey, func(bare, sha string) (string, error) {
			return gitErr(bare, "-c", "gpg.format=ssh", "-c", "gpg.ssh.allowedSignersFile="+allowed, "verify-commit", sha)
		}},
		{"openpgp", pgpKey, func(bare, sha string) (string, error) {
			cmd := exec.Command("git", "verify-commit", sha)
			cmd.Dir, cmd.Env = bare, append(os.Environ(), "GNUPGHOME="+gnupg)
			out, err := cmd.CombinedOutput()
			return string(out), err
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			signer, err := LoadSigner(tt.key)
			if err != nil {
				t.Fatal(err)
			}
			f := newFleet(t, "sites/a")
			unsigned := f.head(t, "sites/a")
			if out, err := tt.verify(f.dir, unsigned); err == nil {
				t.Fatalf("an unsigned commit verified: %s", out)
			}
			src := f.commitOn(t, "main", "v2", map[string]string{"apps/web/deploy.yaml": "image: web:2\n"})
			r := f.open(t, WithSigner(signer))
			ch, err := r.Promote(ctxT(t), PromoteRequest{Rollout: "r1", Wave: "all", Source: src, Targets: targets("a")})
			if err != nil {
				t.Fatal(err)
			}
			rv, err := r.Revert(ctxT(t), RevertRequest{Rollout: "r1", Reason: "test", Targets: targets("a")})
			if err != nil {
				t.Fatal(err)
			}
			for what, sha := range map[string]string{"promotion": ch[0].Commit, "revert": rv[0].Commit} {
				if out, err := tt.verify(f.dir, sha); err != nil {
					t.Errorf("git verify-commit of the %s: %v\n%s", what, err, out)
				}
			}
			// The signature covers the commit: fsck is clean and the tree is what was promoted.
			f.fsck(t)
			if got, want := run(t, f.dir, "rev-parse", ch[0].Commit+"^{tree}"), run(t, f.dir, "rev-parse", src+"^{tree}"); got != want {
				t.Errorf("the signed promotion's tree %s, want %s", got, want)
			}
		})
	}
}

func TestLoadSignerRefuses(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	withPass := filepath.Join(dir, "id_pass")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "secret", "-f", withPass).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	_, pgpPub := openPGPKeyFiles(t, dir)
	junk := filepath.Join(dir, "junk")
	if err := os.WriteFile(junk, []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]string{
		withPass:                   "signing key " + withPass + ": the key is protected by a passphrase",
		withPass + ".pub":          "signing key " + withPass + ".pub: neither an OpenSSH private key nor an armored OpenPGP private key",
		pgpPub:                     "signing key " + pgpPub + ": ",
		junk:                       "neither an OpenSSH private key nor an armored OpenPGP private key",
		filepath.Join(dir, "nope"): "no such file",
	} {
		if _, err := LoadSigner(file); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("LoadSigner(%s) = %v, want %q", filepath.Base(file), err, want)
		}
	}
}

// openPGPKeyFiles writes a new OpenPGP key (no passphrase) as armored private and public key
// files.
func openPGPKeyFiles(t testing.TB, dir string) (private, public string) {
	t.Helper()
	e, err := openpgp.NewEntity("Fleet Wave", "", "fw@example.com", nil)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, blockType string, serialize func(w *bytes.Buffer) error) string {
		var b bytes.Buffer
		w, err := armor.Encode(&b, blockType, nil)
		if err != nil {
			t.Fatal(err)
		}
		var raw bytes.Buffer
		if err := serialize(&raw); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(raw.Bytes()); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	private = write("pgp.key", openpgp.PrivateKeyType, func(w *bytes.Buffer) error { return e.SerializePrivate(w, nil) })
	public = write("pgp.pub", openpgp.PublicKeyType, func(w *bytes.Buffer) error { return e.Serialize(w) })
	return private, public
}

// BenchmarkSign measures signing one promotion commit, per key type.
func BenchmarkSign(b *testing.B) {
	dir := b.TempDir()
	sshKey := filepath.Join(dir, "id_ed25519")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", sshKey).CombinedOutput(); err != nil {
		b.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	pgpKey, _ := openPGPKeyFiles(b, dir)
	msg := []byte("tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\nparent 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n" +
		"author Fleet Wave <fw@example.com> 1764000000 +0000\ncommitter Fleet Wave <fw@example.com> 1764000000 +0000\n\n" +
		"Promote 1234567 to ams-1: app v2\n\nFleetwave-Rollout: rollout/demo/1234567\nFleetwave-Source: 1234567\nFleetwave-Wave: canary\n")
	for _, k := range []struct{ name, file string }{{"ssh-ed25519", sshKey}, {"openpgp-rsa", pgpKey}} {
		s, err := LoadSigner(k.file)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(k.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := s.Sign(msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
