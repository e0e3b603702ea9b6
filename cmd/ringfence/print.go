package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ringfence/ringfence/admin"
)

// printer writes a successful answer as text.
type printer func(w io.Writer, body []byte) error

// table writes rows aligned in columns.
func table(w io.Writer, header string, rows [][]string) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	tw.Flush()
}

func clock(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return t.Local().Format("15:04:05")
}

func seconds(s float64) string {
	if s <= 0 {
		return "-"
	}
	return (time.Duration(s * float64(time.Second))).Round(time.Second).String()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func printStatus(w io.Writer, body []byte) error {
	var o admin.Overview
	if err := json.Unmarshal(body, &o); err != nil {
		return err
	}
	access := "read-only"
	if o.Token.Write {
		access = "read-write"
	}
	fmt.Fprintf(w, "scope: %s    token: %s (%s)    at %s\n", o.Scope, o.Token.Name, access, o.Time.Local().Format(time.DateTime))
	var rows [][]string
	for _, b := range o.Breakers {
		rows = append(rows, breakerRow(b))
	}
	for _, g := range o.Groups {
		for _, b := range g.Members {
			rows = append(rows, breakerRow(b))
		}
	}
	if len(rows) > 0 {
		fmt.Fprintln(w)
		table(w, "BREAKER\tSTATE\tSINCE\tCALLS\tFAILED\tREASON", rows)
	}
	if len(o.Switches) > 0 {
		rows = rows[:0]
		for _, s := range o.Switches {
			last := "-"
			if n := len(s.History); n > 0 {
				c := s.History[n-1]
				last = clock(&c.Time) + " " + c.Reason
			}
			rows = append(rows, []string{s.Name, s.Mode, last})
		}
		fmt.Fprintln(w)
		table(w, "SWITCH\tMODE\tLAST CHANGE", rows)
	}
	if len(o.Outboxes) > 0 {
		rows = rows[:0]
		for _, b := range o.Outboxes {
			rows = append(rows, []string{b.Name, strconv.Itoa(b.Pending), seconds(b.OldestSeconds), strconv.Itoa(b.Dead),
				strconv.FormatUint(b.Delivered, 10), strconv.FormatBool(b.Replaying), dash(b.LastError)})
		}
		fmt.Fprintln(w)
		table(w, "OUTBOX\tPENDING\tOLDEST\tDEAD\tDELIVERED\tREPLAYING\tLAST ERROR", rows)
	}
	if len(o.Rollouts) > 0 {
		rows = rows[:0]
		for _, r := range o.Rollouts {
			verdict := r.Verdict.Outcome
			if r.Verdict.Rule != "" {
				verdict += " (" + r.Verdict.Rule + ")"
			}
			rows = append(rows, []string{r.Name, r.State, fmt.Sprintf("%d/%d", r.Stage+1, len(r.Stages)),
				strconv.FormatFloat(r.Percent, 'g', -1, 64) + "%", verdict, dash(r.Reason)})
		}
		fmt.Fprintln(w)
		table(w, "ROLLOUT\tSTATE\tRING\tCANARY\tVERDICT\tREASON", rows)
	}
	if len(o.Changes) > 0 {
		rows = rows[:0]
		for _, c := range o.Changes {
			what := string(c.Verb)
			if c.Mode != "" {
				what += " " + c.Mode
			}
			obj := string(c.Kind) + " " + c.Name
			if c.Key != "" {
				obj += " [" + c.Key + "]"
			}
			rows = append(rows, []string{clock(&c.Time), c.Actor, what, obj, c.Reason})
		}
		fmt.Fprintln(w)
		table(w, "CHANGED\tBY\tACTION\tOBJECT\tREASON", rows)
	}
	return nil
}

func breakerRow(b admin.BreakerView) []string {
	return []string{b.Name, b.State, clock(b.Since), strconv.FormatUint(b.Requests, 10), strconv.FormatUint(b.Failures, 10), dash(b.Reason)}
}

func printChange(w io.Writer, body []byte) error {
	var a struct {
		Scope  string
		Change admin.Change
		Object json.RawMessage
	}
	if err := json.Unmarshal(body, &a); err != nil {
		return err
	}
	var now struct {
		State, Mode string
		Pending     *int
	}
	json.Unmarshal(a.Object, &now)
	c := a.Change
	what := string(c.Kind) + " " + c.Name
	if c.Key != "" {
		what += " [" + c.Key + "]"
	}
	state := now.State + now.Mode
	if now.Pending != nil {
		state = strconv.Itoa(*now.Pending) + " pending"
	}
	if state == "" {
		state = "done"
	}
	fmt.Fprintf(w, "%s %s: %s (scope %s, by %s, reason %q)\n", c.Verb, what, state, a.Scope, c.Actor, c.Reason)
	return nil
}

func printDeadLetters(w io.Writer, body []byte) error {
	var a struct {
		Outbox      string
		Total       int
		DeadLetters []admin.DeadLetterView `json:"dead_letters"`
	}
	if err := json.Unmarshal(body, &a); err != nil {
		return err
	}
	if a.Total == 0 {
		fmt.Fprintf(w, "outbox %s has no dead letters\n", a.Outbox)
		return nil
	}
	rows := make([][]string, 0, len(a.DeadLetters))
	for _, d := range a.DeadLetters {
		rows = append(rows, []string{d.Key, d.Stream, clock(&d.Enqueued), strconv.Itoa(d.PayloadBytes), d.Reason})
	}
	table(w, "KEY\tSTREAM\tENQUEUED\tBYTES\tREASON", rows)
	if a.Total > len(a.DeadLetters) {
		fmt.Fprintf(w, "(%d of %d shown)\n", len(a.DeadLetters), a.Total)
	}
	return nil
}
