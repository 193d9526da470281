package config

import (
	"flag"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Key is one scalar configuration key and the names that override it.
type Key struct {
	Path string // "listen.grpc"
	Flag string // "listen.grpc", used as -listen.grpc
	Env  string // "HUFU_LISTEN_GRPC"
}

var durationType = reflect.TypeFor[Duration]()

// Keys lists every scalar key of Config. Lists (platforms, system clients) are set only in
// the file.
func Keys() []Key {
	var keys []Key
	walk(reflect.ValueOf(&Config{}).Elem(), "", func(path string, _ reflect.Value) {
		keys = append(keys, Key{Path: path, Flag: path, Env: envName(path)})
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

// Overrides are key values given on the command line, applied after the file.
type Overrides map[string]string

// RegisterFlags adds a flag for every key to fs and returns the map the flags fill.
func RegisterFlags(fs *flag.FlagSet) Overrides {
	o := Overrides{}
	defaults := Default()
	for _, k := range Keys() {
		path := k.Path
		usage := fmt.Sprintf("config key %s (env %s)", path, k.Env)
		var def string
		walk(reflect.ValueOf(&defaults).Elem(), "", func(p string, v reflect.Value) {
			if p == path {
				def = fmt.Sprint(v.Interface())
			}
		})
		if def != "" && def != "0" && def != "false" {
			usage += ", default " + def
		}
		fs.Func(k.Flag, usage, func(raw string) error {
			if err := (&Config{}).set(path, raw); err != nil {
				return err
			}
			o[path] = raw
			return nil
		})
	}
	return o
}

// Load builds the configuration: embedded defaults, then the file (if path is not empty),
// then flag overrides, then HUFU_* variables from environ. It does not validate.
func Load(path string, flags Overrides, environ []string) (Config, error) {
	c := Default()
	if path != "" {
		// Lists in the file replace the defaults rather than merging into them.
		c.Platforms, c.SystemClients = nil, nil
		if err := c.ParseFile(path); err != nil {
			return c, err
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
	return c, nil
}

func sortProblems(ps Problems) {
	sort.SliceStable(ps, func(i, j int) bool { return ps[i].Path < ps[j].Path })
}
