package registry

import (
	"context"
	"errors"
	"io"
	"log/slog"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	registryv1 "github.com/meshplane/meshplane/api/registry/v1"
)

// Server is the gRPC meshplane.registry.v1.Registry service over a Store.
//
// Status codes: INVALID_ARGUMENT for a bad request (the message names each
// field, e.g. "ports[0].port: must be 1..65535", and a google.rpc.BadRequest
// detail lists them); NOT_FOUND for an unknown instance or an expired lease
// (Heartbeat, SetHealth, Deregister) or a service without instances
// (GetService); UNAVAILABLE when etcd is unreachable or has no leader (after
// at most the store's request timeout); ABORTED when concurrent writers kept
// changing the instance; CANCELED / DEADLINE_EXCEEDED when the caller gave
// up; INTERNAL otherwise.
type Server struct {
	registryv1.UnimplementedRegistryServer
	store  *Store
	logger *slog.Logger
}

var _ registryv1.RegistryServer = (*Server)(nil)

// NewServer makes the gRPC service. logger nil discards logs.
func NewServer(store *Store, logger *slog.Logger) *Server {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Server{store: store, logger: logger.With("component", "registry-grpc")}
}

// RegisterGRPC registers the service on a gRPC server.
func (s *Server) RegisterGRPC(r grpc.ServiceRegistrar) {
	registryv1.RegisterRegistryServer(r, s)
}

// Register implements registryv1.RegistryServer.
func (s *Server) Register(ctx context.Context, req *registryv1.RegisterRequest) (*registryv1.RegisterResponse, error) {
	res, err := s.store.Register(ctx, InstanceFromRegisterRequest(req))
	if err != nil {
		return nil, s.status("register", err)
	}
	return &registryv1.RegisterResponse{InstanceId: res.ID, TtlSeconds: res.TTLSeconds, Revision: res.Revision}, nil
}

// Heartbeat implements registryv1.RegistryServer.
func (s *Server) Heartbeat(ctx context.Context, req *registryv1.HeartbeatRequest) (*registryv1.HeartbeatResponse, error) {
	ttl, err := s.store.Heartbeat(ctx, req.GetNamespace(), req.GetService(), req.GetInstanceId())
	if err != nil {
		return nil, s.status("heartbeat", err)
	}
	return &registryv1.HeartbeatResponse{TtlSeconds: ttl}, nil
}

// HeartbeatStream implements registryv1.RegistryServer.
func (s *Server) HeartbeatStream(stream grpc.BidiStreamingServer[registryv1.HeartbeatRequest, registryv1.HeartbeatResponse]) error {
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		resp, err := s.Heartbeat(stream.Context(), req)
		if err != nil {
			return err
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

// SetHealth implements registryv1.RegistryServer.
func (s *Server) SetHealth(ctx context.Context, req *registryv1.SetHealthRequest) (*registryv1.SetHealthResponse, error) {
	rev, err := s.store.SetHealth(ctx, req.GetNamespace(), req.GetService(), req.GetInstanceId(), HealthFromProto(req.GetHealth()))
	if err != nil {
		return nil, s.status("set health", err)
	}
	return &registryv1.SetHealthResponse{Revision: rev}, nil
}

// Deregister implements registryv1.RegistryServer.
func (s *Server) Deregister(ctx context.Context, req *registryv1.DeregisterRequest) (*registryv1.DeregisterResponse, error) {
	rev, err := s.store.Deregister(ctx, req.GetNamespace(), req.GetService(), req.GetInstanceId())
	if err != nil {
		return nil, s.status("deregister", err)
	}
	return &registryv1.DeregisterResponse{Revision: rev}, nil
}

// ListServices implements registryv1.RegistryServer.
func (s *Server) ListServices(ctx context.Context, req *registryv1.ListServicesRequest) (*registryv1.ListServicesResponse, error) {
	if err := ValidateScope(req.GetNamespace(), ""); err != nil {
		return nil, s.status("list services", err)
	}
	svcs, rev, err := s.store.Services(ctx, req.GetNamespace())
	if err != nil {
		return nil, s.status("list services", err)
	}
	resp := &registryv1.ListServicesResponse{Revision: rev, Services: make([]*registryv1.Service, 0, len(svcs))}
	for _, svc := range svcs {
		resp.Services = append(resp.Services, ServiceToProto(svc))
	}
	return resp, nil
}

// GetService implements registryv1.RegistryServer.
func (s *Server) GetService(ctx context.Context, req *registryv1.GetServiceRequest) (*registryv1.GetServiceResponse, error) {
	svc, rev, err := s.store.Service(ctx, req.GetNamespace(), req.GetName())
	if err != nil {
		return nil, s.status("get service", err)
	}
	return &registryv1.GetServiceResponse{Service: ServiceToProto(svc), Revision: rev}, nil
}

// Watch implements registryv1.RegistryServer.
func (s *Server) Watch(req *registryv1.WatchRequest, stream grpc.ServerStreamingServer[registryv1.WatchResponse]) error {
	var sendErr error
	err := s.store.Watch(stream.Context(), req.GetNamespace(), req.GetService(), req.GetSinceRevision(), func(b WatchBatch) error {
		resp := &registryv1.WatchResponse{Revision: b.Revision, Events: make([]*registryv1.WatchEvent, 0, len(b.Events))}
		for _, ev := range b.Events {
			out := &registryv1.WatchEvent{}
			switch ev.Type {
			case WatchPut:
				out.Type = registryv1.WatchEvent_TYPE_PUT
				out.Instance = InstanceToProto(ev.Instance)
			case WatchDelete:
				out.Type = registryv1.WatchEvent_TYPE_DELETE
				out.Instance = InstanceToProto(ev.Instance)
			case WatchReset:
				out.Type = registryv1.WatchEvent_TYPE_RESET
			}
			resp.Events = append(resp.Events, out)
		}
		sendErr = stream.Send(resp)
		return sendErr
	})
	if err == nil || (sendErr != nil && errors.Is(err, sendErr)) {
		return err // the stream is broken; its error is already a status
	}
	return s.status("watch", err)
}

// status maps a store error to a gRPC status.
func (s *Server) status(op string, err error) error {
	if ve, ok := AsValidationError(err); ok {
		st := status.New(codes.InvalidArgument, ve.Message())
		br := &errdetails.BadRequest{}
		for _, v := range ve.Violations {
			br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: v.Field, Description: v.Description})
		}
		if withDetails, derr := st.WithDetails(br); derr == nil {
			st = withDetails
		}
		return st.Err()
	}
	switch {
	case errors.Is(err, ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, ErrUnavailable):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, ErrConflict):
		return status.Error(codes.Aborted, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	s.logger.Error("registry request failed", "op", op, "err", err)
	return status.Error(codes.Internal, err.Error())
}
