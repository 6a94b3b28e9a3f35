package rollout

import (
	"bytes"
	"fmt"
	"io/fs"
	"path"

	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/lexer"
	"github.com/goccy/go-yaml/parser"
)

// KindSite is the kind of a site document in a site file (spec.siteFiles).
const KindSite = "Site"

// Limits on the site files of one plan, on top of each file's own limits (MaxPlanBytes,
// MaxPlanDepth): a fleet of 10,000 sites kept one per file is 10,000 small files, far under
// both; a commit cannot make the worker read gigabytes.
const (
	MaxSiteFiles      = 50_000
	MaxSiteFilesBytes = 64 << 20
)

// fileSiteDoc is one site document of a site file.
type fileSiteDoc struct {
	APIVersion string            `yaml:"apiVersion"`
	Kind       string            `yaml:"kind"`
	Name       string            `yaml:"name"`
	Labels     map[string]string `yaml:"labels"`
	Timezone   string            `yaml:"timezone"`
	Cluster    *Cluster          `yaml:"cluster"`
}

// siteEntry is a site as written, in the plan (spec.sites[i]) or in a site file, with where.
type siteEntry struct {
	fileSite
	doc  *validator // positions in the document that defines it
	file string     // that document's file when it is a site file; "" for the plan
	path string     // the site's YAML path in the document
}

// at returns the file ("" for the plan), line and column of the site's field sub (".name"),
// or of the site itself for "".
func (e siteEntry) at(sub string) (string, int, int) {
	if e.path == "$" && sub == "" && len(e.doc.file.Docs) == 1 {
		if tk := e.doc.file.Docs[0].Body.GetToken(); tk != nil && tk.Position != nil {
			return e.file, tk.Position.Line, tk.Position.Column
		}
	}
	line, col := e.doc.position(e.path + sub)
	return e.file, line, col
}

// siteErrorf records an issue at a site's field, in the file that defines the site.
func (v *validator) siteErrorf(e siteEntry, sub, format string, args ...any) {
	file, line, col := e.at(sub)
	v.issues = append(v.issues, Issue{File: file, Line: line, Column: col, Message: fmt.Sprintf(format, args...)})
}

// siteFiles reads the site documents of the files matching pattern (path.Match syntax, from
// the root of v.files), in the order of their names. Every problem is an issue with its file,
// line and column; a file with problems gives no site. Site files are named from the plan's
// folder, as the plan file is named ("plans/fleetwave.yaml" reads "plans/sites/a.yaml").
func (v *validator) siteFiles(pattern string) []siteEntry {
	before := len(v.issues)
	defer func() { v.sitesIncomplete = len(v.issues) > before }()
	at := "$.spec.siteFiles"
	if _, err := path.Match(pattern, ""); err != nil || !fs.ValidPath(pattern) {
		v.errorf(at, "siteFiles %q is not a valid pattern: write a path from the root of the fleet repo, like \"sites/*.yaml\" (* ? [a-z] as in path.Match)", pattern)
		return nil
	}
	if v.files == nil {
		v.errorf(at, "siteFiles: this plan keeps its sites in files of the fleet repo, and they cannot be read here: read the plan where its repo is")
		return nil
	}
	names, err := fs.Glob(v.files, pattern)
	if err != nil {
		v.errorf(at, "siteFiles %q: %v", pattern, err)
		return nil
	}
	var files []string
	for _, name := range names {
		if info, err := fs.Stat(v.files, name); err == nil && !info.IsDir() {
			files = append(files, name)
		}
	}
	switch {
	case len(files) == 0:
		v.errorf(at, "siteFiles %q matches no file", pattern)
		return nil
	case len(files) > MaxSiteFiles:
		v.errorf(at, "siteFiles %q matches %d files; a plan may read at most %d", pattern, len(files), MaxSiteFiles)
		return nil
	}
	var out []siteEntry
	total := 0
	for _, name := range files {
		data, err := fs.ReadFile(v.files, name)
		if err != nil {
			v.issues = append(v.issues, Issue{File: path.Join(path.Dir(v.name), name), Line: 1, Column: 1, Message: fmt.Sprintf("cannot read this site file: %v", err)})
			continue
		}
		if total += len(data); total > MaxSiteFilesBytes {
			v.errorf(at, "siteFiles %q: the files come to more than %d bytes (64 MiB), at %s", pattern, MaxSiteFilesBytes, name)
			return nil
		}
		entries, issues := siteDocs(path.Join(path.Dir(v.name), name), data)
		v.issues = append(v.issues, issues...)
		if len(issues) == 0 {
			out = append(out, entries...)
		}
	}
	return out
}

// siteDocs parses one site file: one or more Site documents, each checked strictly.
func siteDocs(file string, data []byte) ([]siteEntry, []Issue) {
	in := func(issues ...Issue) []Issue {
		for i := range issues {
			issues[i].File = file
		}
		return issues
	}
	if issue := checkLimits(data, "site file"); issue != nil {
		return nil, in(*issue)
	}
	if bytes.HasPrefix(data, []byte("\xef\xbb\xbf")) {
		return nil, in(Issue{Line: 1, Column: 1, Message: "the file starts with a byte order mark (BOM), which YAML does not expect here: save it as UTF-8 without BOM"})
	}
	// Lexed once: refused features are found in the tokens the parser then reads.
	tokens := lexer.Tokenize(string(data))
	if issues := refuseTokens(tokens, "site file"); len(issues) > 0 {
		return nil, in(issues...)
	}
	f, err := parser.Parse(tokens, 0)
	if err != nil {
		return nil, in(yamlIssue(err, &fileSiteDoc{}))
	}
	var out []siteEntry
	var issues []Issue
	for _, d := range f.Docs {
		if d.Body == nil {
			continue // an empty document, as after a trailing "---"
		}
		var doc fileSiteDoc
		crash, err := decode(d.Body, &doc)
		switch {
		case crash != nil:
			issues = append(issues, *crash)
			continue
		case err != nil:
			issues = append(issues, yamlIssue(err, &doc))
			continue
		}
		dv := &validator{name: file, file: &ast.File{Name: file, Docs: []*ast.DocumentNode{d}}}
		switch {
		case doc.Kind != KindSite:
			dv.errorf("$.kind", "kind must be %q, got %q", KindSite, doc.Kind)
		case doc.APIVersion != "" && doc.APIVersion != APIVersion:
			dv.errorf("$.apiVersion", "apiVersion must be %q, got %q", APIVersion, doc.APIVersion)
		}
		if len(dv.issues) > 0 {
			issues = append(issues, dv.issues...)
			continue
		}
		out = append(out, siteEntry{doc: dv, file: file, path: "$",
			fileSite: fileSite{Name: doc.Name, Labels: doc.Labels, Timezone: doc.Timezone, Cluster: doc.Cluster}})
	}
	if len(out) == 0 && len(issues) == 0 {
		issues = append(issues, Issue{Line: 1, Column: 1, Message: "the file holds no Site document"})
	}
	return out, in(issues...)
}
