package test

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"

	"github.com/fleetwave/fleetwave/rollout"
)

// yamlBlock is a fenced yaml block, with what precedes it (a marker line may sit there).
var yamlBlock = regexp.MustCompile("(?ms)([^\n]*)\n```ya?ml\n(.*?)^```")

// invalidMarker before a block says the block is a deliberate mistake.
const invalidMarker = "<!-- invalid -->"

// TestDocsYAML: every YAML block of README.md and docs/ is valid YAML, and every whole
// document of fleetwave's kinds (a plan, a serve config) passes the parser the product uses;
// a block after the marker "<!-- invalid -->" must fail instead.
func TestDocsYAML(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, filepath.Join("..", "README.md"))
	checked := map[string]int{}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range yamlBlock.FindAllStringSubmatch(string(data), -1) {
			before, block := m[1], m[2]
			line := strings.Count(string(data[:strings.Index(string(data), m[0])]), "\n") + 2
			where := file + ":" + strconv.Itoa(line)
			name := file
			var err error
			kind := ""
			switch {
			case regexp.MustCompile(`(?m)^kind:\s*` + rollout.Kind + `\b`).MatchString(block):
				kind = rollout.Kind
				_, err = rollout.ParsePlan(name, []byte(block))
			case regexp.MustCompile(`(?m)^kind:\s*` + rollout.KindServeConfig + `\b`).MatchString(block):
				kind = rollout.KindServeConfig
				_, err = rollout.ParseServeConfig(name, []byte(block))
			default:
				kind = "yaml"
				var v any
				err = yaml.Unmarshal([]byte(block), &v)
			}
			checked[kind]++
			if strings.Contains(before, invalidMarker) {
				if err == nil {
					t.Errorf("%s: a block marked %s is valid", where, invalidMarker)
				}
				continue
			}
			if err != nil {
				t.Errorf("%s: %s block: %v", where, kind, shifted(err, line-1))
			}
		}
	}
	if checked[rollout.Kind] == 0 {
		t.Errorf("no plan found in the docs: %v", checked)
	}
	t.Logf("checked %v", checked)
}

// shifted moves a parse error's positions from the block's lines to the file's.
func shifted(err error, lines int) error {
	var pe *rollout.PlanError
	if !errors.As(err, &pe) {
		return err
	}
	out := *pe
	out.Issues = nil
	for _, is := range pe.Issues {
		is.Line += lines
		out.Issues = append(out.Issues, is)
	}
	return &out
}
