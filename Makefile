# Code generation and checks. `npm ci` is all a fresh clone needs: generated code is committed under src/gen.
BUF := npx --no-install buf

.PHONY: gen check-gen breaking build test bench

gen:            ## regenerate src/gen from proto/ with buf + ts-proto (no network: the plugin is in node_modules)
	rm -rf src/gen
	$(BUF) generate

check-gen: gen  ## fail when the committed src/gen differs from what proto/ generates
	git diff --exit-code --stat -- src/gen

breaking:       ## our proto/ must stay a compatible superset of the v1 wire contract
	$(BUF) breaking --against ../shared/spec/turboci-v1.binpb

build:
	npx --no-install tsc -p tsconfig.json

test:
	npm test

bench:
	npm run bench
