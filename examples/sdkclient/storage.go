package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
)

// StorageOptions configures a storageClient, the way a cloud SDK's client
// options do.
type StorageOptions struct {
	// HTTPClient sends the requests. Nil means http.DefaultClient.
	HTTPClient *http.Client
}

// storageClient stands in for a cloud SDK's object-storage client: it knows
// the service's URLs and errors, and leaves the sending to the *http.Client
// in its options.
type storageClient struct {
	endpoint string
	http     *http.Client
}

func newStorageClient(endpoint string, opts StorageOptions) *storageClient {
	c := &storageClient{endpoint: endpoint, http: opts.HTTPClient}
	if c.http == nil {
		c.http = http.DefaultClient
	}
	return c
}

// StatusError is the SDK's error for a response with an error status.
type StatusError struct {
	StatusCode int
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("storage: %d %s", e.StatusCode, http.StatusText(e.StatusCode))
}

// Get reads an object.
func (c *storageClient) Get(ctx context.Context, name string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.endpoint+"/"+name, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &StatusError{StatusCode: resp.StatusCode}
	}
	return body, nil
}
