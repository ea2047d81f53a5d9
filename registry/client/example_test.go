package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"os"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/meshplane/meshplane/internal/embedetcd"
	"github.com/meshplane/meshplane/registry"
	"github.com/meshplane/meshplane/registry/client"
)

// Example registers an instance with an in-process control plane (embedded
// etcd, registry store and gRPC server on loopback), waits for the
// registration, changes its health, and deregisters on shutdown. An
// application does only the part after "the application's side".
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// A control plane, as `controlplane serve` would run it.
	dir, err := os.MkdirTemp("", "meshplane-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	etcd, err := embedetcd.Start(ctx, embedetcd.Config{DataDir: dir, ClientAddr: "127.0.0.1:0", PeerAddr: "127.0.0.1:0"})
	if err != nil {
		log.Fatal(err)
	}
	defer etcd.Close()
	cli, err := clientv3.New(clientv3.Config{Endpoints: etcd.Endpoints(), Logger: zap.NewNop()})
	if err != nil {
		log.Fatal(err)
	}
	defer cli.Close()
	store, err := registry.NewStore(cli, registry.StoreOptions{})
	if err != nil {
		log.Fatal(err)
	}
	// A real control plane also runs store.Run (the watch cache feeding
	// xDS); without it, the reads below go straight to etcd.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	srv := grpc.NewServer()
	registry.NewServer(store, nil).RegisterGRPC(srv)
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()

	// The application's side: connect, describe the instance, Run.
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	c, err := client.New(conn, client.Registration{
		Service:   "checkout",
		Namespace: "shop",
		Address:   "10.0.0.7",
		Ports:     []client.Port{{Name: "grpc", Port: 9000, Protocol: client.ProtocolGRPC}},
		Labels:    map[string]string{"version": "v1"},
		TTL:       10 * time.Second,
	})
	if err != nil {
		log.Fatal(err)
	}
	appCtx, stopApp := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(appCtx) }()
	<-c.Registered()
	fmt.Println("registered as", c.InstanceID())

	if err := c.SetHealth(ctx, client.HealthDraining); err != nil {
		log.Fatal(err)
	}
	svc, _, err := store.Service(ctx, "shop", "checkout")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(svc.Host(), "has", len(svc.Instances), "instance(s), health", svc.Instances[0].Health)

	stopApp() // shutting down: Run deregisters before it returns
	if err := <-done; err != nil {
		log.Fatal(err)
	}
	_, _, err = store.Service(ctx, "shop", "checkout")
	fmt.Println("after shutdown, not found:", errors.Is(err, registry.ErrNotFound))
	// Output:
	// registered as 10.0.0.7-9000
	// checkout.shop has 1 instance(s), health DRAINING
	// after shutdown, not found: true
}
