// gRPC server reflection (what grpcurl and Postman ask), built on its first call. Parsing our protos and indexing
// their descriptors takes ~110 ms, a sixth of a start from a snapshot, on a server that reflection may never be
// asked of. The reflection services are registered at once (a call never finds them missing); what answers them
// is made when one comes.
import type { Server, ServiceDefinition, UntypedServiceImplementation } from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';

interface AddedService {
  readonly definition: ServiceDefinition;
  readonly handlers: UntypedServiceImplementation;
}

type Handler = (...args: unknown[]) => void;

/** The services (v1 and v1alpha) and their handlers, as `reflection` would add them to a server. */
function servicesOf(reflection: ReflectionService): AddedService[] {
  const added: AddedService[] = [];
  const collector: Pick<Server, 'addService'> = { addService: (definition, handlers) => void added.push({ definition, handlers }) };
  reflection.addToServer(collector as Server);
  return added;
}

/** A service's key: the path of its first method (each reflection version is one service of one method). */
const pathOf = (definition: ServiceDefinition): string => Object.values(definition)[0]!.path;

/** Serves reflection of `protoFiles` (under `includeDir`) on `server`, built on the first reflection call. */
export function addReflection(server: Server, protoFiles: readonly string[], includeDir: string): void {
  let built: Map<string, UntypedServiceImplementation> | null = null;
  const handlersFor = (path: string): UntypedServiceImplementation => {
    built ??= new Map(
      servicesOf(new ReflectionService(protoLoader.loadSync([...protoFiles], { includeDirs: [includeDir] }))).map((s) => [pathOf(s.definition), s.handlers]),
    );
    return built.get(path)!;
  };
  // The same service definitions, from a reflection of nothing (cheap); each handler hands its call on.
  for (const { definition, handlers } of servicesOf(new ReflectionService({}))) {
    const path = pathOf(definition);
    const deferred = Object.fromEntries(Object.keys(handlers).map((name) => [name, (...args: unknown[]) => (handlersFor(path)[name] as Handler)(...args)]));
    server.addService(definition, deferred);
  }
}
