package gitops

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// FS returns the files of commit (a full sha or a branch name) as a read-only fs.FS: a snapshot
// of that commit's tree, for readers that walk files (a plan's site files). It reads objects
// from the copy as they are opened, under the copy's read lock, and decodes each directory once.
func (r *Repo) FS(commit string) (fs.FS, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	c, err := r.resolveLocked(commit)
	if err != nil {
		return nil, err
	}
	return &treeFS{r: r, root: c.TreeHash, dirs: map[plumbing.Hash][]object.TreeEntry{}}, nil
}

type treeFS struct {
	r    *Repo
	root plumbing.Hash

	mu   sync.Mutex
	dirs map[plumbing.Hash][]object.TreeEntry // decoded trees, entries sorted by name
}

var (
	_ fs.ReadDirFS  = (*treeFS)(nil)
	_ fs.ReadFileFS = (*treeFS)(nil)
	_ fs.StatFS     = (*treeFS)(nil)
)

// entries returns the tree's entries, sorted by name as fs.ReadDir wants (git sorts a
// directory as if its name ended in "/").
func (t *treeFS) entries(h plumbing.Hash) ([]object.TreeEntry, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if es, ok := t.dirs[h]; ok {
		return es, nil
	}
	t.r.mu.RLock()
	tree, err := object.GetTree(t.r.stor, h)
	t.r.mu.RUnlock()
	if err != nil {
		return nil, err
	}
	es := slices.Clone(tree.Entries)
	slices.SortFunc(es, func(a, b object.TreeEntry) int { return strings.Compare(a.Name, b.Name) })
	t.dirs[h] = es
	return es, nil
}

// lookup finds name's entry; the root is a directory entry named ".".
func (t *treeFS) lookup(op, name string) (object.TreeEntry, error) {
	if !fs.ValidPath(name) {
		return object.TreeEntry{}, &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	e := object.TreeEntry{Name: ".", Mode: filemode.Dir, Hash: t.root}
	if name == "." {
		return e, nil
	}
	for _, part := range strings.Split(name, "/") {
		if e.Mode != filemode.Dir {
			return object.TreeEntry{}, &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
		}
		es, err := t.entries(e.Hash)
		if err != nil {
			return object.TreeEntry{}, &fs.PathError{Op: op, Path: name, Err: err}
		}
		i, found := slices.BinarySearchFunc(es, part, func(e object.TreeEntry, name string) int { return strings.Compare(e.Name, name) })
		if !found || es[i].Mode == filemode.Submodule {
			return object.TreeEntry{}, &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
		}
		e = es[i]
	}
	return e, nil
}

// info describes an entry; a blob's size is read from the copy.
func (t *treeFS) info(e object.TreeEntry) (fs.FileInfo, error) {
	fi := treeInfo{name: path.Base(e.Name), mode: fs.ModeDir | 0o555}
	if e.Mode != filemode.Dir {
		t.r.mu.RLock()
		o, err := t.r.stor.EncodedObject(plumbing.BlobObject, e.Hash)
		t.r.mu.RUnlock()
		if err != nil {
			return nil, err
		}
		fi.size, fi.mode = o.Size(), 0o444
		if e.Mode == filemode.Executable {
			fi.mode = 0o555
		}
	}
	return fi, nil
}

func (t *treeFS) read(e object.TreeEntry) ([]byte, error) {
	t.r.mu.RLock()
	defer t.r.mu.RUnlock()
	b, err := object.GetBlob(t.r.stor, e.Hash)
	if err != nil {
		return nil, err
	}
	rd, err := b.Reader()
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	return io.ReadAll(rd)
}

func (t *treeFS) Open(name string) (fs.File, error) {
	e, err := t.lookup("open", name)
	if err != nil {
		return nil, err
	}
	fi, err := t.info(e)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	if fi.IsDir() {
		entries, err := t.ReadDir(name)
		if err != nil {
			return nil, err
		}
		return &treeDir{info: fi, entries: entries}, nil
	}
	data, err := t.read(e)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	return &treeFile{info: fi, Reader: bytes.NewReader(data)}, nil
}

func (t *treeFS) Stat(name string) (fs.FileInfo, error) {
	e, err := t.lookup("stat", name)
	if err != nil {
		return nil, err
	}
	fi, err := t.info(e)
	if err != nil {
		return nil, &fs.PathError{Op: "stat", Path: name, Err: err}
	}
	return fi, nil
}

func (t *treeFS) ReadFile(name string) ([]byte, error) {
	e, err := t.lookup("read", name)
	if err != nil {
		return nil, err
	}
	if e.Mode == filemode.Dir {
		return nil, &fs.PathError{Op: "read", Path: name, Err: errors.New("is a directory")}
	}
	data, err := t.read(e)
	if err != nil {
		return nil, &fs.PathError{Op: "read", Path: name, Err: err}
	}
	return data, nil
}

func (t *treeFS) ReadDir(name string) ([]fs.DirEntry, error) {
	e, err := t.lookup("readdir", name)
	if err != nil {
		return nil, err
	}
	if e.Mode != filemode.Dir {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: errors.New("not a directory")}
	}
	es, err := t.entries(e.Hash)
	if err != nil {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: err}
	}
	out := make([]fs.DirEntry, 0, len(es))
	for _, child := range es {
		if child.Mode == filemode.Submodule {
			continue
		}
		fi, err := t.info(child)
		if err != nil {
			return nil, &fs.PathError{Op: "readdir", Path: name, Err: fmt.Errorf("%s: %w", child.Name, err)}
		}
		out = append(out, fs.FileInfoToDirEntry(fi))
	}
	return out, nil
}

type treeInfo struct {
	name string
	size int64
	mode fs.FileMode
}

func (i treeInfo) Name() string       { return i.name }
func (i treeInfo) Size() int64        { return i.size }
func (i treeInfo) Mode() fs.FileMode  { return i.mode }
func (i treeInfo) ModTime() time.Time { return time.Time{} }
func (i treeInfo) IsDir() bool        { return i.mode.IsDir() }
func (i treeInfo) Sys() any           { return nil }

type treeFile struct {
	info fs.FileInfo
	*bytes.Reader
}

func (f *treeFile) Stat() (fs.FileInfo, error) { return f.info, nil }
func (f *treeFile) Close() error               { return nil }

type treeDir struct {
	info    fs.FileInfo
	entries []fs.DirEntry
	next    int
}

func (d *treeDir) Stat() (fs.FileInfo, error) { return d.info, nil }
func (d *treeDir) Close() error               { return nil }
func (d *treeDir) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: d.info.Name(), Err: errors.New("is a directory")}
}

func (d *treeDir) ReadDir(n int) ([]fs.DirEntry, error) {
	rest := d.entries[d.next:]
	if n <= 0 {
		d.next = len(d.entries)
		return rest, nil
	}
	if len(rest) == 0 {
		return nil, io.EOF
	}
	rest = rest[:min(n, len(rest))]
	d.next += len(rest)
	return rest, nil
}
