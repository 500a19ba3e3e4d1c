package cmdutil

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/spf13/pflag"

	"github.com/pdsafelist/pdsafelist/pkg/config"
	"github.com/pdsafelist/pdsafelist/pkg/plan"
)

// SettingFlags binds each flag that overrides a setting to that setting's
// field. The flags write into their own Settings, begun from
// config.Defaults(), so a flag's default and its help read the one
// default; only the flags the user gave are copied over the file's
// settings, so a flag beats the file and an unchanged flag's default never
// does. A command without the flag never sees it.
type SettingFlags struct {
	values config.Settings
	copies map[string]func(dst *config.Settings)
}

// NewSettingFlags starts the flags' values at the defaults.
func NewSettingFlags() *SettingFlags {
	return &SettingFlags{values: config.Defaults(), copies: map[string]func(*config.Settings){}}
}

// Bind defines the flag name with define (a pflag XxxVar method) on the
// setting field picks out, with that setting's default.
func Bind[T any](b *SettingFlags, name string, field func(*config.Settings) *T, define func(p *T, name string, value T, usage string), usage string) {
	p := field(&b.values)
	define(p, name, *p, usage)
	b.copies[name] = func(dst *config.Settings) { *field(dst) = *p }
}

// Value adapts a flag value type (such as *plan.MaxDelete) to Bind.
func Value[T any, P interface {
	*T
	pflag.Value
}](fs *pflag.FlagSet) func(p *T, name string, _ T, usage string) {
	return func(p *T, name string, _ T, usage string) { fs.Var(P(p), name, usage) }
}

// apply sets what each flag the user gave overrides.
func (b *SettingFlags) apply(s *config.Settings, fs *pflag.FlagSet) {
	if b == nil || fs == nil {
		return
	}
	fs.Visit(func(f *pflag.Flag) {
		if set, ok := b.copies[f.Name]; ok {
			set(s)
		}
	})
}

// MinEntries is --min-entries: N for every set or SET=N, repeatable.
type MinEntries map[string]int

func (m *MinEntries) Set(v string) error {
	one, err := config.ParseMinEntries([]string{v})
	if err != nil {
		return err
	}
	if *m == nil {
		*m = MinEntries{}
	}
	maps.Copy(*m, one)
	return nil
}

func (m *MinEntries) String() string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(*m)) {
		out = append(out, fmt.Sprintf("%s=%d", k, (*m)[k]))
	}
	return strings.Join(out, ",")
}

func (m *MinEntries) Type() string { return "N|SET=N" }

var _ pflag.Value = (*plan.MaxDelete)(nil)
