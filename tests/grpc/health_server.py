"""A real gRPC health server (grpcio's own grpc.health.v1 implementation) for
picolet's gRPC probe test. Listens on 127.0.0.1:PORT; the status of the
overall service ("") and of "svc" follows the contents of STATE_FILE
("SERVING" or "NOT_SERVING"), re-read every 50 ms.

usage: health_server.py PORT STATE_FILE
"""
import sys
import time
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

port, state_file = int(sys.argv[1]), sys.argv[2]
servicer = health.HealthServicer()
server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
server.add_insecure_port(f"127.0.0.1:{port}")
server.start()
print("listening", flush=True)
status = health_pb2.HealthCheckResponse
while True:
    try:
        want = open(state_file).read().strip()
    except OSError:
        want = "NOT_SERVING"
    code = status.SERVING if want == "SERVING" else status.NOT_SERVING
    for name in ("", "svc"):
        servicer.set(name, code)
    time.sleep(0.05)
