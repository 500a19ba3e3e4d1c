#!/usr/bin/env bash
# Builds a real kube-apiserver (v1.37.2) and etcd (v3.6.16) from the Go
# module proxy into $(go env GOPATH)/bin, unless they are there already,
# for the Kubernetes tests. k8s.io/kubernetes cannot be go-installed (its
# go.mod replaces the staging modules with local paths), so it is built
# from a wrapper module that maps each staging module to its published
# twin at the same release. About 10 CPU-minutes once.
set -euo pipefail
KUBE_VERSION=v1.37.2
STAGING_VERSION=v0.37.2
ETCD_VERSION=v3.6.16
bin="$(go env GOPATH)/bin"
mkdir -p "$bin"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Versions are read into variables first: under pipefail, `cmd | grep -q`
# or `cmd | head -1` fails with SIGPIPE (exit 141) whenever the reader
# exits before the writer has finished.
have_kube=$("$bin/kube-apiserver" --version 2>/dev/null || true)
if [[ "$have_kube" != *"$KUBE_VERSION"* ]]; then
	mkdir "$work/kapi"
	cd "$work/kapi"
	gomod=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')
	{
		echo 'module kapi'
		echo 'go 1.26.0'
		echo "require k8s.io/kubernetes $KUBE_VERSION"
		echo 'replace ('
		grep -E '^\s*k8s.io/[a-z0-9-]+ => ./staging' "$gomod" | awk -v v="$STAGING_VERSION" '{print "\t"$1" => "$1" "v}'
		echo ')'
	} >go.mod
	printf '//go:build tools\n\npackage kapi\n\nimport _ "k8s.io/kubernetes/cmd/kube-apiserver"\n' >tools.go
	GOFLAGS=-mod=mod go mod tidy -e >/dev/null 2>&1
	# Release builds stamp the version with -X; without it the binary says
	# v0.0.0-master and the check above would rebuild it on every run.
	v=k8s.io/component-base/version
	minor=${KUBE_VERSION#v1.}
	minor=${minor%%.*}
	GOFLAGS=-mod=mod go build -trimpath \
		-ldflags "-X $v.gitVersion=$KUBE_VERSION -X $v.gitMajor=1 -X $v.gitMinor=$minor -X $v.gitTreeState=clean" \
		-o "$bin/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
fi

have_etcd=$("$bin/etcd" --version 2>/dev/null || true)
if [[ "$have_etcd" != *"${ETCD_VERSION#v}"* ]]; then
	mkdir "$work/etcd"
	cd "$work/etcd"
	printf 'module etcdbin\n\ngo 1.26.0\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION" >go.mod
	printf 'package main\n\nimport (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\nfunc main() { etcdmain.Main(os.Args) }\n' >main.go
	GOFLAGS=-mod=mod go mod tidy >/dev/null 2>&1
	GOFLAGS=-mod=mod go build -trimpath -o "$bin/etcd" .
fi
"$bin/kube-apiserver" --version
etcd_version=$("$bin/etcd" --version)
echo "${etcd_version%%$'\n'*}"
