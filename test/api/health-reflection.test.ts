// Standard gRPC tools can talk to the server: the health service and server reflection answer.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { after, before, test } from 'node:test';
import { credentials, loadPackageDefinition, makeGenericClientConstructor, type ServiceError } from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { service as healthService } from 'grpc-health-check';
import { startServer, tempDir, type ServerProcess } from '../support/server.js';

let dir: ReturnType<typeof tempDir>;
let server: ServerProcess;

before(async () => {
  dir = tempDir();
  server = await startServer(`${dir.path}/health.db`);
});
after(async () => {
  await server.stop();
  dir.remove();
});

test('grpc.health.v1.Health reports SERVING for the server and the orchestrator service', async () => {
  const Client = makeGenericClientConstructor(healthService, 'Health');
  const client = new Client(server.address, credentials.createInsecure()) as unknown as {
    check(req: { service: string }, cb: (err: ServiceError | null, res: { status: string }) => void): void;
    close(): void;
  };
  for (const name of ['', 'turboci.v1.TurboCIOrchestrator', 'turboci.v1.TurboCIEventLog', 'turboci.v1.TurboCIRunnerPull']) {
    const res = await new Promise<{ status: string }>((resolve, reject) =>
      client.check({ service: name }, (err, r) => (err ? reject(err) : resolve(r))),
    );
    assert.equal(res.status, 'SERVING');
  }
  client.close();
});

// Both versions: older grpcurl and other tools still ask v1alpha. The server builds what answers them on the first
// reflection call (src/transport/reflection.ts), so these are also the first calls to it.
for (const version of ['v1', 'v1alpha'] as const) test(`server reflection (${version}) lists our services and serves their descriptors`, async () => {
  const require = createRequire(import.meta.url);
  const protoPath = require.resolve(`@grpc/reflection/build/proto/grpc/reflection/${version}/reflection.proto`);
  const pkg = loadPackageDefinition(protoLoader.loadSync(protoPath, { keepCase: true })) as unknown as {
    grpc: { reflection: Record<typeof version, { ServerReflection: new (addr: string, creds: unknown) => ReflectionClient }> };
  };
  interface ReflectionClient {
    ServerReflectionInfo(): NodeJS.ReadWriteStream & { write(m: object): boolean; end(): void };
    close(): void;
  }
  const client = new pkg.grpc.reflection[version].ServerReflection(server.address, credentials.createInsecure());
  const ask = (req: object) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const call = client.ServerReflectionInfo();
      call.on('data', (m: Record<string, unknown>) => {
        resolve(m);
        call.end();
      });
      call.on('error', reject);
      call.write(req);
    });
  const listed = (await ask({ list_services: '' })) as { list_services_response: { service: { name: string }[] } };
  const names = listed.list_services_response.service.map((s) => s.name);
  assert.ok(names.includes('turboci.v1.TurboCIOrchestrator'), names.join(', '));
  const file = (await ask({ file_containing_symbol: 'turboci.v1.WriteNodesRequest' })) as {
    file_descriptor_response?: { file_descriptor_proto: Buffer[] };
  };
  assert.ok((file.file_descriptor_response?.file_descriptor_proto.length ?? 0) > 0);
  client.close();
});
