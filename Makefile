# callcontrold — run `make help` for the targets.
SHELL := /usr/bin/env bash
.DEFAULT_GOAL := help

TOOL := go tool -modfile=tools/go.mod
BIN  := bin

.PHONY: help
help: ## Describe the targets
	@awk 'BEGIN {FS = ":.*?## "} /^[a-zA-Z0-9_-]+:.*?## / {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: run
run: ## Run the service on its embedded defaults (localhost:50051)
	go run ./cmd/callcontrold

.PHONY: build
build: ## Build callcontrold and callctl into bin/
	go build -o $(BIN)/ ./cmd/...

.PHONY: test
test: test-deps ## Run all tests with the race detector
	go test -race -count=1 ./...

.PHONY: test-deps
test-deps: ## Install the Debian packages the real-endpoint tests need, when missing
	@bash scripts/test-deps.sh

.PHONY: e2e-node
e2e-node: ## Node.js clients against the running binary: @grpc/grpc-js, and the generated TS client over Connect and gRPC-Web
	bash e2e/node/run.sh

.PHONY: e2e-python
e2e-python: ## Python (grpcio) client against the running binary; installs python3-grpcio when missing
	bash e2e/python/run.sh

.PHONY: e2e-browser
e2e-browser: ## The console in headless Chromium against the running binary (screenshot: artifacts/console.png)
	bash web/e2e/run.sh

.PHONY: generate
generate: web-deps ## Regenerate gen/ (Go) and web/gen (TypeScript) from proto/, and the console's web/dist
	$(TOOL) buf generate
	$(TOOL) buf generate --template buf.gen.ts.yaml
	cd web && npm run --silent build

# web/'s npm packages (protoc-gen-es, esbuild, puppeteer-core...), installed
# from the lock file when it changed.
web/node_modules/.package-lock.json: web/package-lock.json
	cd web && npm ci --no-audit --no-fund

.PHONY: web-deps
web-deps: web/node_modules/.package-lock.json ## Install web/'s locked npm packages

GENERATED := gen web/gen web/dist

.PHONY: check-generate
check-generate: generate ## Regenerate (Go, TypeScript, console) and fail if anything committed was stale
	cd web && npm run --silent typecheck
	@git diff --exit-code --stat -- $(GENERATED) || { echo "generated files are stale: run 'make generate' and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- $(GENERATED))" || { git status --porcelain -- $(GENERATED); echo "untracked generated files: run 'make generate' and commit"; exit 1; }

.PHONY: lint
lint: ## buf lint, buf format check, gofmt, go vet, go.mod tidy
	$(TOOL) buf lint
	$(TOOL) buf format -d --exit-code
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^gen/')); test -z "$$out" || { echo "gofmt needed:"; echo "$$out"; exit 1; }
	go vet ./...
	@go mod tidy -diff || { echo "go.mod/go.sum are not tidy: run 'go mod tidy' and commit"; exit 1; }
	cd bench/etcd && go vet ./...
	@cd bench/etcd && go mod tidy -diff || { echo "bench/etcd: go.mod/go.sum are not tidy: run 'go mod tidy' there and commit"; exit 1; }

.PHONY: breaking
breaking: ## buf breaking against the previous commit (when it had the proto)
	@if git cat-file -e HEAD~1:proto 2>/dev/null; then \
		$(TOOL) buf breaking --against '.git#ref=HEAD~1' && echo "buf breaking: no breaking change against HEAD~1"; \
	else echo "no proto in HEAD~1: nothing to compare"; fi

.PHONY: bench
bench: test-deps ## Benchmarks: callstore in-process, the gRPC load client, SIP call setups (SIPp), callcontrold beside etcd (see docs/BENCHMARKS.md)
	go test -run '^$$' -bench . -benchmem ./callstore/
	go test -run '^$$' -bench Transition -benchmem ./pbx/
	go test -run '^$$' -bench Transitions -benchtime 5000x ./replica/
	go run ./cmd/callbench
	go run ./cmd/sipbench
	cd bench/etcd && go run .

.PHONY: bench-smoke
bench-smoke: test-deps ## Run every benchmark scenario and the soak for a moment (CI: checks they run, measures nothing)
	go run ./cmd/callbench --smoke
	go run ./cmd/sipbench --smoke
	cd bench/etcd && go test -count=1 ./... && go run . --smoke
	go build -o $(BIN)/ ./cmd/callcontrold ./cmd/callsoak
	$(BIN)/callsoak --smoke --server $(BIN)/callcontrold

SOAK_FLAGS ?=
.PHONY: soak
soak: ## Soak: callcontrold with demo traffic and 1,000 watchers for 10 minutes; memory must stay flat (SOAK_FLAGS=--duration 30m)
	go build -o $(BIN)/ ./cmd/callcontrold ./cmd/callsoak
	$(BIN)/callsoak --server $(BIN)/callcontrold $(SOAK_FLAGS)

.PHONY: tools
tools: ## Build the pinned tools (buf, generators, grpcurl, grpc-health-probe)
	go build -modfile=tools/go.mod -o /dev/null tool
