// helm-render: renders a Helm chart as `helm template` does, for tests on
// machines that have no helm binary (none is packaged for Debian bookworm or
// npm, and the only registries here are those two). It is built from Debian's
// Go packages (./run setup: GOPATH=/usr/share/gocode, GO111MODULE=off) with the
// libraries Helm 3 itself renders with: Go's text/template, Masterminds/sprig
// (Helm's function library), ghodss/yaml (the YAML<->JSON conversion that
// sigs.k8s.io/yaml, Helm's and the API server's, was forked from) and
// xeipuuv/gojsonschema (Helm 3's values.schema.json validator before it
// moved to santhosh-tekuri/jsonschema).
//
// What it does as Helm's engine (pkg/engine) does: values.yaml coalesced
// with the given values files (maps merge, a null deletes a default, later
// files win), read as Helm reads them (numbers become float64: a large
// integer prints as 1e+06 without `int64`); values checked against
// values.schema.json before anything renders; Chart.yaml's kubeVersion
// checked against the Kubernetes version given; every file of templates/
// parsed into one template set (deepest paths first, as Helm orders them, so
// a later `define` of the same name wins as it does there), each executed
// with .Values, .Release (Name, Namespace, Service, IsInstall, IsUpgrade,
// Revision as for an install), .Chart (Chart.yaml's fields by their Go
// names), .Capabilities.KubeVersion and .Template (Name, BasePath);
// missingkey=zero with "<no value>" removed; sprig's functions but env and
// expandenv; Helm's include (nested at most 1000 deep per name), tpl,
// required, toYaml, fromYaml, fromYamlArray, toJson, fromJson, fromJsonArray
// and lookup (an empty map, as `helm template` has no cluster); files whose
// name starts with "_" are not output and NOTES.txt is returned apart.
//
// What it does not do (it fails, or the feature is absent, rather than
// render something different): subcharts and dependencies (refused),
// .Files, .Capabilities.APIVersions, .Subcharts, toToml, Helm's later
// additions to the function list (toYamlPretty, mustToYaml, ...), hooks,
// install order of kinds, library charts, --set parsing (values come as
// files), post-renderers.
//
// Usage: helm-render CHART_DIR RELEASE NAMESPACE KUBE_VERSION [VALUES_FILE...]
// ("-" reads a values file from stdin). Prints JSON: {values, manifests:
// [{template, text, objects}], notes}; objects are the YAML documents of
// each manifest read as the API server reads them (YAML 1.1, converted to
// JSON; duplicate keys are an error). Any failure: exit 1, the reason on
// stderr.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"text/template"

	"github.com/Masterminds/semver"
	"github.com/Masterminds/sprig"
	"github.com/ghodss/yaml"
	"github.com/xeipuuv/gojsonschema"
)

type values = map[string]interface{}

// chartMetadata is Chart.yaml as Helm's chart.Metadata exposes it to templates (.Chart.Name, .Chart.AppVersion, ...).
type chartMetadata struct {
	Name         string            `json:"name"`
	Home         string            `json:"home,omitempty"`
	Sources      []string          `json:"sources,omitempty"`
	Version      string            `json:"version"`
	Description  string            `json:"description,omitempty"`
	Keywords     []string          `json:"keywords,omitempty"`
	Maintainers  []maintainer      `json:"maintainers,omitempty"`
	Icon         string            `json:"icon,omitempty"`
	APIVersion   string            `json:"apiVersion"`
	Condition    string            `json:"condition,omitempty"`
	Tags         string            `json:"tags,omitempty"`
	AppVersion   string            `json:"appVersion,omitempty"`
	Deprecated   bool              `json:"deprecated,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	KubeVersion  string            `json:"kubeVersion,omitempty"`
	Type         string            `json:"type,omitempty"`
	Dependencies []interface{}     `json:"dependencies,omitempty"`
}

type maintainer struct {
	Name  string `json:"name"`
	Email string `json:"email,omitempty"`
	URL   string `json:"url,omitempty"`
}

// kubeVersion is .Capabilities.KubeVersion.
type kubeVersion struct {
	Version    string
	Major      string
	Minor      string
	GitVersion string
}

func (k kubeVersion) String() string { return k.Version }

type manifest struct {
	Template string        `json:"template"`
	Text     string        `json:"text"`
	Objects  []interface{} `json:"objects"`
}

type output struct {
	Values    values     `json:"values"`
	Manifests []manifest `json:"manifests"`
	Notes     string     `json:"notes"`
}

// Helm's nesting bound for include of one name (a template including itself).
const maxIncludeDepth = 1000

func main() {
	if len(os.Args) < 5 {
		fmt.Fprintln(os.Stderr, "usage: helm-render CHART_DIR RELEASE NAMESPACE KUBE_VERSION [VALUES_FILE...]")
		os.Exit(2)
	}
	out, err := render(os.Args[1], os.Args[2], os.Args[3], os.Args[4], os.Args[5:])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func render(chartDir, release, namespace, kube string, valuesFiles []string) (*output, error) {
	// The values first: stdin is read whole before any other check can end
	// the process (a writer would otherwise get EPIPE instead of the reason).
	user, err := userValues(valuesFiles)
	if err != nil {
		return nil, err
	}
	meta, err := readChart(chartDir)
	if err != nil {
		return nil, err
	}
	caps, err := capabilities(meta, kube)
	if err != nil {
		return nil, err
	}
	defaults, err := readValues(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		return nil, err
	}
	vals := coalesce(user, defaults)
	if err := validateValues(chartDir, meta.Name, vals); err != nil {
		return nil, err
	}
	sources, err := readTemplates(chartDir, meta.Name)
	if err != nil {
		return nil, err
	}
	top := values{
		"Values":       vals,
		"Chart":        meta,
		"Capabilities": map[string]interface{}{"KubeVersion": caps},
		"Release": map[string]interface{}{
			"Name": release, "Namespace": namespace, "Service": "Helm",
			"IsInstall": true, "IsUpgrade": false, "Revision": 1,
		},
	}
	rendered, err := execute(sources, top, meta.Name)
	if err != nil {
		return nil, err
	}
	out := &output{Values: vals, Manifests: []manifest{}}
	for _, name := range sortedKeys(rendered) {
		if strings.HasSuffix(name, "NOTES.txt") {
			out.Notes = rendered[name]
			continue
		}
		objects, err := documents(rendered[name])
		if err != nil {
			return nil, fmt.Errorf("%s renders YAML the API server cannot read: %w", name, err)
		}
		out.Manifests = append(out.Manifests, manifest{Template: name, Text: rendered[name], Objects: objects})
	}
	return out, nil
}

func readChart(dir string) (*chartMetadata, error) {
	data, err := os.ReadFile(filepath.Join(dir, "Chart.yaml"))
	if err != nil {
		return nil, err
	}
	var meta chartMetadata
	if err := yaml.Unmarshal(data, &meta); err != nil {
		return nil, fmt.Errorf("Chart.yaml: %w", err)
	}
	if meta.Name == "" || meta.Version == "" || meta.APIVersion == "" {
		return nil, errors.New("Chart.yaml: apiVersion, name and version are required")
	}
	if len(meta.Dependencies) > 0 || meta.Type == "library" {
		return nil, errors.New("Chart.yaml: dependencies and library charts are not supported by helm-render")
	}
	if _, err := os.Stat(filepath.Join(dir, "charts")); err == nil {
		return nil, errors.New("charts/: subcharts are not supported by helm-render")
	}
	return &meta, nil
}

// capabilities is .Capabilities.KubeVersion for the given version, refused as Helm refuses it when Chart.yaml's kubeVersion excludes it.
func capabilities(meta *chartMetadata, kube string) (kubeVersion, error) {
	v, err := semver.NewVersion(kube)
	if err != nil {
		return kubeVersion{}, fmt.Errorf("Kubernetes version %q: %w", kube, err)
	}
	if meta.KubeVersion != "" {
		c, err := semver.NewConstraint(meta.KubeVersion)
		if err != nil {
			return kubeVersion{}, fmt.Errorf("Chart.yaml kubeVersion %q: %w", meta.KubeVersion, err)
		}
		if !c.Check(v) {
			return kubeVersion{}, fmt.Errorf("chart requires kubeVersion: %s which is incompatible with Kubernetes v%s", meta.KubeVersion, v)
		}
	}
	version := "v" + v.String()
	return kubeVersion{Version: version, GitVersion: version, Major: fmt.Sprint(v.Major()), Minor: fmt.Sprint(v.Minor())}, nil
}

// readValues reads a values file as Helm does: YAML to JSON to Go values, so every number is a float64.
func readValues(file string) (values, error) {
	var data []byte
	var err error
	if file == "-" {
		data, err = io.ReadAll(os.Stdin)
	} else {
		data, err = os.ReadFile(file)
	}
	if err != nil {
		return nil, err
	}
	v := values{}
	if err := yaml.Unmarshal(data, &v); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if v == nil {
		v = values{}
	}
	return v, nil
}

// userValues: the values files merged in order (later wins, maps merge).
func userValues(files []string) (values, error) {
	user := values{}
	for _, f := range files {
		v, err := readValues(f)
		if err != nil {
			return nil, err
		}
		user = mergeOver(user, v)
	}
	return user, nil
}

func mergeOver(base, over values) values {
	out := values{}
	for k, v := range base {
		out[k] = v
	}
	for k, v := range over {
		b, bIsMap := out[k].(values)
		o, oIsMap := v.(values)
		if bIsMap && oIsMap {
			out[k] = mergeOver(b, o)
		} else {
			out[k] = v
		}
	}
	return out
}

// coalesce fills what the user did not set from the chart's defaults; a default the user set to null is removed.
func coalesce(user, defaults values) values {
	for k, d := range defaults {
		u, set := user[k]
		switch {
		case set && u == nil:
			delete(user, k)
		case !set:
			user[k] = d
		default:
			um, uIsMap := u.(values)
			dm, dIsMap := d.(values)
			if uIsMap && dIsMap {
				coalesce(um, dm)
			}
		}
	}
	return user
}

func validateValues(chartDir, chartName string, vals values) error {
	schema, err := os.ReadFile(filepath.Join(chartDir, "values.schema.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	result, err := gojsonschema.Validate(gojsonschema.NewBytesLoader(schema), gojsonschema.NewGoLoader(vals))
	if err != nil {
		return fmt.Errorf("values.schema.json: %w", err)
	}
	if result.Valid() {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "values don't meet the specifications of the schema(s) in the following chart(s):\n%s:\n", chartName)
	for _, e := range result.Errors() {
		fmt.Fprintf(&b, "- %s\n", e)
	}
	return errors.New(strings.TrimSuffix(b.String(), "\n"))
}

// readTemplates: every file under templates/, by its Helm name (CHART/templates/...).
func readTemplates(chartDir, chartName string) (map[string]string, error) {
	sources := map[string]string{}
	root := filepath.Join(chartDir, "templates")
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(chartDir, p)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(p)
		sources[path.Join(chartName, filepath.ToSlash(rel))] = string(data)
		return err
	})
	return sources, err
}

// parseOrder: deeper paths first, then by name, both descending, as Helm parses them.
func parseOrder(names []string) []string {
	sort.Slice(names, func(i, j int) bool {
		di, dj := strings.Count(names[i], "/"), strings.Count(names[j], "/")
		if di != dj {
			return di > dj
		}
		return names[i] > names[j]
	})
	return names
}

func execute(sources map[string]string, top values, chartName string) (map[string]string, error) {
	t := template.New("gotpl").Option("missingkey=zero")
	t.Funcs(funcs(t))
	for _, name := range parseOrder(sortedKeys(sources)) {
		if _, err := t.New(name).Parse(sources[name]); err != nil {
			return nil, fmt.Errorf("parse error in %s: %w", name, err)
		}
	}
	rendered := map[string]string{}
	for _, name := range sortedKeys(sources) {
		if strings.HasPrefix(path.Base(name), "_") {
			continue
		}
		top["Template"] = map[string]interface{}{"Name": name, "BasePath": path.Join(chartName, "templates")}
		var b strings.Builder
		if err := t.ExecuteTemplate(&b, name, top); err != nil {
			return nil, fmt.Errorf("execution error in %s: %w", name, err)
		}
		rendered[name] = strings.ReplaceAll(b.String(), "<no value>", "")
	}
	return rendered, nil
}

// funcs: sprig's text functions without env and expandenv, and Helm's own.
func funcs(t *template.Template) template.FuncMap {
	f := sprig.TxtFuncMap()
	delete(f, "env")
	delete(f, "expandenv")
	depth := map[string]int{}
	f["include"] = func(name string, data interface{}) (string, error) {
		if depth[name] >= maxIncludeDepth {
			return "", fmt.Errorf("rendering template has a nested reference name: %s", name)
		}
		depth[name]++
		defer func() { depth[name]-- }()
		var b strings.Builder
		err := t.ExecuteTemplate(&b, name, data)
		return b.String(), err
	}
	f["tpl"] = func(text string, data interface{}) (string, error) {
		c, err := t.Clone()
		if err != nil {
			return "", err
		}
		inline, err := c.New("tpl").Parse(text)
		if err != nil {
			return "", fmt.Errorf("error during tpl function execution for %q: %w", text, err)
		}
		var b strings.Builder
		if err := inline.Execute(&b, data); err != nil {
			return "", fmt.Errorf("error during tpl function execution for %q: %w", text, err)
		}
		return strings.ReplaceAll(b.String(), "<no value>", ""), nil
	}
	f["required"] = func(message string, v interface{}) (interface{}, error) {
		if s, isString := v.(string); v == nil || (isString && s == "") {
			return v, errors.New(message)
		}
		return v, nil
	}
	f["toYaml"] = func(v interface{}) string {
		data, err := yaml.Marshal(v)
		if err != nil {
			return "" // Helm swallows marshal errors inside a template.
		}
		return strings.TrimSuffix(string(data), "\n")
	}
	f["toJson"] = func(v interface{}) string {
		data, err := json.Marshal(v)
		if err != nil {
			return ""
		}
		return string(data)
	}
	f["fromYaml"] = func(s string) values {
		m := values{}
		if err := yaml.Unmarshal([]byte(s), &m); err != nil {
			m["Error"] = err.Error()
		}
		return m
	}
	f["fromYamlArray"] = func(s string) []interface{} {
		a := []interface{}{}
		if err := yaml.Unmarshal([]byte(s), &a); err != nil {
			a = []interface{}{err.Error()}
		}
		return a
	}
	f["fromJson"] = func(s string) values {
		m := values{}
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			m["Error"] = err.Error()
		}
		return m
	}
	f["fromJsonArray"] = func(s string) []interface{} {
		a := []interface{}{}
		if err := json.Unmarshal([]byte(s), &a); err != nil {
			a = []interface{}{err.Error()}
		}
		return a
	}
	f["lookup"] = func(apiVersion, kind, namespace, name string) (values, error) { return values{}, nil }
	return f
}

// The document separator Helm splits manifests on.
var separator = regexp.MustCompile(`(?:^|\s*\n)---\s*`)

// documents: a manifest's YAML documents as the API server reads them; empty and comment-only documents are dropped.
func documents(text string) ([]interface{}, error) {
	objects := []interface{}{}
	for _, doc := range separator.Split(text, -1) {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		data, err := yaml.YAMLToJSONStrict([]byte(doc))
		if err != nil {
			return nil, err
		}
		var o interface{}
		if err := json.Unmarshal(data, &o); err != nil {
			return nil, err
		}
		if o != nil {
			objects = append(objects, o)
		}
	}
	return objects, nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
