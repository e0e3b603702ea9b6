package etcdtest

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestServerKeepsDataAcrossRestart(t *testing.T) {
	s := New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := clientv3.New(clientv3.Config{Endpoints: s.Endpoints(), DialTimeout: 5 * time.Second})
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Put(ctx, "k", "v")
	require.NoError(t, err)

	s.Stop()
	require.NoError(t, s.Restart(ctx))

	resp, err := c.Get(ctx, "k")
	require.NoError(t, err, "Get after Restart")
	require.Len(t, resp.Kvs, 1)
	require.Equal(t, "v", string(resp.Kvs[0].Value), "value after Restart")
}
