// The transport benchmark's baseline: a grpc-js server whose WriteNodes handler does nothing but answer a canned
// response (the bytes of a real answer of our server, given base64 on the command line, so both answers are the same
// size). Requests are decoded and answers encoded by the same generated code as ours: what is left is the cost of
// gRPC itself, the ceiling for any server of this API in node.
//
//   node dist/bench/noop-server.js <response-base64>      prints {"address": "127.0.0.1:PORT"}, stops on SIGTERM
import { Server, ServerCredentials, type sendUnaryData, type ServerUnaryCall } from '@grpc/grpc-js';
import { TurboCIOrchestratorService, WriteNodesResponse, type WriteNodesRequest } from '../src/gen/turboci/v1/service.js';

const encoded = process.argv[2];
if (!encoded) {
  console.error('usage: node dist/bench/noop-server.js <WriteNodesResponse, base64>');
  process.exit(2);
}
const response = WriteNodesResponse.decode(Buffer.from(encoded, 'base64'));

const server = new Server();
// Only WriteNodes: grpc-js answers UNIMPLEMENTED for the methods left out.
server.addService(TurboCIOrchestratorService, {
  writeNodes: (_call: ServerUnaryCall<WriteNodesRequest, WriteNodesResponse>, callback: sendUnaryData<WriteNodesResponse>) => callback(null, response),
});
const port = await new Promise<number>((resolve, reject) =>
  server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
);
console.log(JSON.stringify({ address: `127.0.0.1:${port}` }));
process.once('SIGTERM', () => server.tryShutdown(() => process.exit(0)));
