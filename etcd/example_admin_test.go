package etcd_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/ringfence/ringfence/admin"
	"github.com/ringfence/ringfence/etcd"
	"github.com/ringfence/ringfence/fallback"
)

// Two instances mount the operator's console with the fleet Admin: an
// operator sets the check-in switch to manual mode through the console of
// one instance, and the switch of the other follows.
func ExampleAdmin() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	endpoints, stop := startEtcd(ctx)
	defer stop()
	quiet := etcd.Settings{Logger: slog.New(slog.DiscardHandler)}

	var switches []*fallback.Switch
	var consoles []*httptest.Server
	for range 2 {
		client := dial(endpoints)
		defer client.Close()
		store, err := etcd.NewModeStore(client, "check-in", etcd.ModeStoreSettings{Settings: quiet})
		if err != nil {
			log.Fatal(err)
		}
		defer store.Close()
		sw, err := fallback.NewSwitch(ctx, "check-in", fallback.SwitchSettings{Store: store})
		if err != nil {
			log.Fatal(err)
		}
		defer sw.Close()
		switches = append(switches, sw)

		objects := admin.Objects{Switches: []*fallback.Switch{sw}}
		fleet, err := etcd.NewAdmin(etcd.AdminSettings{Objects: objects, Modes: map[string]*etcd.ModeStore{"check-in": store}})
		if err != nil {
			log.Fatal(err)
		}
		h, err := admin.New(admin.Settings{
			Tokens:  []admin.Token{{Name: "alice", Secret: "a-secret-of-16-bytes-or-more", Write: true}},
			Objects: objects,
			Actions: fleet,
			Logger:  slog.New(slog.DiscardHandler),
		})
		if err != nil {
			log.Fatal(err)
		}
		srv := httptest.NewServer(h)
		defer srv.Close()
		consoles = append(consoles, srv)
	}

	req, err := http.NewRequestWithContext(ctx, http.MethodPost, consoles[0].URL+"/api/v1/switches/check-in/mode",
		strings.NewReader(`{"mode": "manual", "reason": "booking API down"}`))
	if err != nil {
		log.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer a-secret-of-16-bytes-or-more")
	req.Header.Set("Content-Type", "application/json")
	resp, err := consoles[0].Client().Do(req)
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	var answer struct {
		Scope string `json:"scope"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&answer); err != nil {
		log.Fatal(err)
	}
	fmt.Println(resp.Status, "scope", answer.Scope)

	waitUntil(func() bool { return switches[1].Mode() == fallback.ModeManual })
	last := switches[1].History()[0]
	fmt.Println("the other instance:", switches[1].Mode(), "by", last.Actor, "-", last.Reason)
	// Output:
	// 200 OK scope fleet
	// the other instance: manual by alice - booking API down
}
