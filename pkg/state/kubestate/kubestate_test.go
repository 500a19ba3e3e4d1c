package kubestate_test

import (
	"context"
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/pdsafelist/pdsafelist/pkg/state"
	"github.com/pdsafelist/pdsafelist/pkg/state/kubestate"
	"github.com/pdsafelist/pdsafelist/pkg/testutil/kubetest"
)

const ns = "default"

var now = time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)

// TestConfigMapStore runs every case against one real API server.
func TestConfigMapStore(t *testing.T) {
	c := kubetest.Start(t)
	admin, err := kubernetes.NewForConfig(c.AdminConfig())
	if err != nil {
		t.Fatal(err)
	}
	api := admin.CoreV1().ConfigMaps(ns)
	t.Run("RoundTrip", func(t *testing.T) { roundTrip(t, api) })
	t.Run("UpdateRace", func(t *testing.T) { updateRace(t, api) })
	t.Run("CreateRace", func(t *testing.T) { createRace(t, api) })
	t.Run("TooLarge", func(t *testing.T) { tooLarge(t, api) })
	t.Run("Foreign", func(t *testing.T) { foreign(t, api) })
	t.Run("Untrusted", func(t *testing.T) { untrusted(t, api) })
	t.Run("Forbidden", func(t *testing.T) { forbidden(t, c) })
}

// stateWith remembers prefixes for the set "events".
func stateWith(prefixes ...string) *state.File {
	f := state.New()
	var seen []state.Seen
	for _, p := range prefixes {
		seen = append(seen, state.Seen{Prefix: netip.MustParsePrefix(p), TTL: 30 * time.Second})
	}
	f.Observe("events", seen, nil, now, state.Window{Grace: time.Hour})
	return f
}

func known(t *testing.T, f *state.File) string {
	t.Helper()
	var out []string
	for _, p := range f.Known("events", now, state.Window{Grace: time.Hour}) {
		out = append(out, p.String())
	}
	return strings.Join(out, " ")
}

func get(t *testing.T, api kubestate.API, name string) *corev1.ConfigMap {
	t.Helper()
	cm, err := api.Get(context.Background(), name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return cm
}

// A saved state loads back the same; a save of the same state sends no
// write (resourceVersion unchanged).
func roundTrip(t *testing.T, api kubestate.API) {
	ctx := context.Background()
	s := kubestate.New(api, ns, "roundtrip")
	f, err := s.Load(ctx)
	if err != nil || len(f.Sets) != 0 {
		t.Fatalf("load of no ConfigMap: %v, %d sets", err, len(f.Sets))
	}
	if err := s.Save(ctx, stateWith("193.0.2.1/32", "2001:db9::/48")); err != nil {
		t.Fatal(err)
	}
	cm := get(t, api, "roundtrip")
	if cm == nil || cm.Labels[kubestate.ManagedByLabel] != kubestate.ManagedBy || cm.Data[kubestate.DataKey] == "" {
		t.Fatalf("saved ConfigMap: %+v", cm)
	}
	s2 := kubestate.New(api, ns, "roundtrip")
	back, err := s2.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := known(t, back); got != "193.0.2.1/32 2001:db9::/48" {
		t.Errorf("loaded back %q", got)
	}
	if err := s2.Save(ctx, back); err != nil {
		t.Fatal(err)
	}
	if rv := get(t, api, "roundtrip").ResourceVersion; rv != cm.ResourceVersion {
		t.Errorf("unchanged state was written: resourceVersion %s -> %s", cm.ResourceVersion, rv)
	}
	// The same store saves again over the version it wrote.
	if err := s2.Save(ctx, stateWith("193.0.2.7/32")); err != nil {
		t.Fatal(err)
	}
	if err := s2.Save(ctx, stateWith("193.0.2.8/32")); err != nil {
		t.Errorf("second save by the same store: %v", err)
	}
}

// Two writers save from the same read at the same moment: exactly one
// wins, the other gets a conflict and its state is not what is stored.
func updateRace(t *testing.T, api kubestate.API) {
	ctx := context.Background()
	seed := kubestate.New(api, ns, "race")
	if _, err := seed.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if err := seed.Save(ctx, stateWith("193.0.2.1/32")); err != nil {
		t.Fatal(err)
	}
	for round := range 5 {
		a, b := kubestate.New(api, ns, "race"), kubestate.New(api, ns, "race")
		for _, s := range []*kubestate.Store{a, b} {
			if _, err := s.Load(ctx); err != nil {
				t.Fatal(err)
			}
		}
		// Each round's states differ from what is stored, so both must write.
		mine := []string{"198.51.100." + strconv.Itoa(round) + "/32", "203.0.113." + strconv.Itoa(round) + "/32"}
		errs := race(func() error { return a.Save(ctx, stateWith(mine[0])) },
			func() error { return b.Save(ctx, stateWith(mine[1])) })
		winner := checkOneWins(t, errs)
		back, err := kubestate.New(api, ns, "race").Load(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := mine[winner]
		if got := known(t, back); got != want {
			t.Errorf("round %d: writer %d won, but the ConfigMap holds %q", round, winner, got)
		}
	}
}

// Two writers that both found no ConfigMap: one creates it, the other is
// refused rather than overwriting.
func createRace(t *testing.T, api kubestate.API) {
	ctx := context.Background()
	a, b := kubestate.New(api, ns, "create-race"), kubestate.New(api, ns, "create-race")
	for _, s := range []*kubestate.Store{a, b} {
		if _, err := s.Load(ctx); err != nil {
			t.Fatal(err)
		}
	}
	winner := checkOneWins(t, race(func() error { return a.Save(ctx, stateWith("198.51.100.1/32")) },
		func() error { return b.Save(ctx, stateWith("203.0.113.1/32")) }))
	back, err := kubestate.New(api, ns, "create-race").Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := known(t, back), []string{"198.51.100.1/32", "203.0.113.1/32"}[winner]; got != want {
		t.Errorf("writer %d won, but the ConfigMap holds %q", winner, got)
	}
}

// race runs both at once, released together.
func race(fs ...func() error) []error {
	errs := make([]error, len(fs))
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, f := range fs {
		wg.Go(func() {
			<-start
			errs[i] = f()
		})
	}
	close(start)
	wg.Wait()
	return errs
}

func checkOneWins(t *testing.T, errs []error) int {
	t.Helper()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil:
			if winner >= 0 {
				t.Fatalf("both writers won")
			}
			winner = i
		case !errors.Is(err, kubestate.ErrConflict):
			t.Fatalf("writer %d: %v, want a conflict", i, err)
		case strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "configmap default/"):
			t.Errorf("conflict %q: want one line naming the ConfigMap", err)
		}
	}
	if winner < 0 {
		t.Fatalf("neither writer won: %v", errs)
	}
	return winner
}

// A state past what a ConfigMap holds is refused before anything is
// sent, with a line that says so and what to do; what was stored stays.
func tooLarge(t *testing.T, api kubestate.API) {
	ctx := context.Background()
	s := kubestate.New(api, ns, "large")
	if _, err := s.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(ctx, stateWith("193.0.2.1/32")); err != nil {
		t.Fatal(err)
	}
	rv := get(t, api, "large").ResourceVersion
	var big []string
	for i := range 80_000 {
		big = append(big, netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb9, byte(i >> 16), byte(i >> 8), byte(i), 1, 15: 1}).String()+"/128")
	}
	s = kubestate.New(api, ns, "large")
	if _, err := s.Load(ctx); err != nil {
		t.Fatal(err)
	}
	err := s.Save(ctx, stateWith(big...))
	if err == nil || !strings.Contains(err.Error(), "more than a ConfigMap holds") || !strings.Contains(err.Error(), "--state-dir") {
		t.Fatalf("oversized state: %v", err)
	}
	t.Logf("refused: %.200s", err)
	if got := get(t, api, "large").ResourceVersion; got != rv {
		t.Errorf("the ConfigMap was written (resourceVersion %s -> %s)", rv, got)
	}
}

// A ConfigMap of the name that pdsafelist did not create is neither read
// nor overwritten.
func foreign(t *testing.T, api kubestate.API) {
	ctx := context.Background()
	theirs := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "theirs", Namespace: ns},
		Data: map[string]string{kubestate.DataKey: `{"format_version":2,"sets":{}}`, "other": "keep"}}
	created, err := api.Create(ctx, theirs, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s := kubestate.New(api, ns, "theirs")
	_, err = s.Load(ctx)
	if err == nil || !strings.Contains(err.Error(), "refusing") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("foreign ConfigMap: %v", err)
	}
	if err := s.Save(ctx, stateWith("193.0.2.1/32")); err == nil {
		t.Error("saved over a foreign ConfigMap")
	}
	if got := get(t, api, "theirs"); got.ResourceVersion != created.ResourceVersion {
		t.Error("the foreign ConfigMap was written")
	}
}

// What the ConfigMap holds is read as the state file is: a bad prefix,
// an out-of-range time, unknown fields or a wrong format make it a
// corrupt state (a warning, empty memory), and the next save replaces it
// without touching keys that are not ours.
func untrusted(t *testing.T, api kubestate.API) {
	ctx := context.Background()
	for i, data := range []string{
		`{"format_version":2,"sets":{"events":{"groups":[{"first":1,"prefixes":"193.0.2.5/24"}]}}}`,
		`{"format_version":2,"sets":{"events":{"groups":[{"first":-1,"prefixes":"193.0.2.5"}]}}}`,
		`{"format_version":2,"sets":{},"extra":1}`,
		`{"format_version":9}`,
		`{"format_version":2,"sets":{"events":{"groups":[{"first":1,"prefixes":"fe80::1%eth0"}]}}}`,
		"\x00",
	} {
		name := "hostile-" + string(rune('a'+i))
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns,
			Labels: map[string]string{kubestate.ManagedByLabel: kubestate.ManagedBy}},
			Data: map[string]string{kubestate.DataKey: data, "note": "not ours"}}
		if _, err := api.Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		s := kubestate.New(api, ns, name)
		f, err := s.Load(ctx)
		var corrupt *state.CorruptError
		if !errors.As(err, &corrupt) || len(f.Sets) != 0 {
			t.Errorf("%q: got %v with %d sets, want a corrupt state", data, err, len(f.Sets))
			continue
		}
		if err := corrupt.SetAside(now); err != nil {
			t.Errorf("set aside: %v", err)
		}
		if err := s.Save(ctx, stateWith("193.0.2.9/32")); err != nil {
			t.Fatal(err)
		}
		got := get(t, api, name)
		if got.Data["note"] != "not ours" || !strings.Contains(got.Data[kubestate.DataKey], "193.0.2.9") {
			t.Errorf("after the save: %v", got.Data)
		}
	}
}

// Without RBAC the store names what to grant, in one line.
func forbidden(t *testing.T, c *kubetest.Cluster) {
	user, err := kubernetes.NewForConfig(c.UserConfig())
	if err != nil {
		t.Fatal(err)
	}
	_, err = kubestate.New(user.CoreV1().ConfigMaps(ns), ns, "any").Load(context.Background())
	if err == nil || !strings.Contains(err.Error(), "forbidden") || !strings.Contains(err.Error(), "deployment.yaml") || strings.Contains(err.Error(), "\n") {
		t.Errorf("forbidden read: %v", err)
	}
}
