// Package browsertest drives the admin console page in a real headless
// Chromium (Debian's chromium package, through chromedp). It is a module of
// its own so that the core module does not depend on chromedp; it holds
// tests only.
//
// The tests look for /usr/bin/chromium. Without it they skip with a
// message saying so, except when the environment variable CI is set, where
// a missing browser is a failure.
package browsertest
