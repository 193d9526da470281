package config

import (
	"fmt"
	"github.com/hufu-hsm/hufu/daemon/webhook"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Key is one scalar configuration key and the names that override it.
type Key struct {
	Path     string // "listen.grpc"
	Flag     string // "listen.grpc", used as -listen.grpc
	Env      string // "HUFU_LISTEN_GRPC"
	Bool     bool   // true or false: -development alone sets it
	Category string // the top-level section, "listen"; "" for a top-level key
}

var durationType = reflect.TypeFor[Duration]()

// Keys lists every scalar key of Config. Lists (platforms, system clients) are set only in
// the file.
func Keys() []Key {
	var keys []Key
	walk(reflect.ValueOf(&Config{}).Elem(), "", func(path string, v reflect.Value) {
		section, _, nested := strings.Cut(path, ".")
		if !nested {
			section = ""
		}
		keys = append(keys, Key{Path: path, Flag: path, Env: envName(path), Bool: v.Kind() == reflect.Bool, Category: section})
	})
	return keys
}

func envName(path string) string {
	return "HUFU_" + strings.ToUpper(strings.NewReplacer(".", "_").Replace(path))
}

func walk(v reflect.Value, prefix string, leaf func(path string, v reflect.Value)) {
	t := v.Type()
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		path := name
		if prefix != "" {
			path = prefix + "." + name
		}
		f := v.Field(i)
		switch {
		case f.Type() == durationType:
			leaf(path, f)
		case f.Kind() == reflect.Struct:
			walk(f, path, leaf)
		case f.Kind() == reflect.String, f.Kind() == reflect.Bool, f.Kind() == reflect.Int:
			leaf(path, f)
		}
	}
}

// set parses raw into the key at path.
func (c *Config) set(path, raw string) error {
	var target reflect.Value
	walk(reflect.ValueOf(c).Elem(), "", func(p string, v reflect.Value) {
		if p == path {
			target = v
		}
	})
	if !target.IsValid() {
		return fmt.Errorf("unknown key %q", path)
	}
	switch {
	case target.Type() == durationType:
		d, err := time.ParseDuration(raw)
		if err != nil {
			return fmt.Errorf("%s: %q is not a duration like 30s or 5m", path, raw)
		}
		target.SetInt(int64(d))
	case target.Kind() == reflect.String:
		target.SetString(raw)
	case target.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return fmt.Errorf("%s: %q is not true or false", path, raw)
		}
		target.SetBool(b)
	case target.Kind() == reflect.Int:
		n, err := strconv.Atoi(raw)
		if err != nil {
			return fmt.Errorf("%s: %q is not an integer", path, raw)
		}
		target.SetInt(int64(n))
	}
	return nil
}

// Overrides are key values given on the command line, applied last: over the file and the
// environment.
type Overrides map[string]string

// Value is the key at path in c as a flag would give it ("" for an unknown path).
func (c *Config) Value(path string) string {
	var out string
	walk(reflect.ValueOf(c).Elem(), "", func(p string, v reflect.Value) {
		if p == path {
			out = fmt.Sprint(v.Interface())
		}
	})
	return out
}

// Load builds the configuration: embedded defaults, then the file (if path is not empty),
// then HUFU_* variables from environ, then flag overrides; a development configuration is
// then filled in (Development). It does not validate.
func Load(path string, flags Overrides, environ []string) (Config, error) {
	c := Default()
	if path != "" {
		if err := c.ParseFile(path); err != nil {
			return c, err
		}
	}
	env := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	for _, k := range Keys() {
		if v, ok := env[k.Env]; ok {
			if err := c.set(k.Path, v); err != nil {
				return c, fmt.Errorf("environment %s: %w", k.Env, err)
			}
		}
	}
	paths := make([]string, 0, len(flags))
	for p := range flags {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		if err := c.set(p, flags[p]); err != nil {
			return c, fmt.Errorf("flag -%w", err)
		}
	}
	if c.Development {
		c.fillDevelopment()
	}
	c.Providers.Each(func(_ string, o *webhook.Options) { o.EnsureDefaults() })
	for i := range c.Audit.Sinks {
		c.Audit.Sinks[i] = c.Audit.Sinks[i].WithDefaults()
	}
	return c, nil
}

func sortProblems(ps Problems) {
	sort.SliceStable(ps, func(i, j int) bool { return ps[i].Path < ps[j].Path })
}
