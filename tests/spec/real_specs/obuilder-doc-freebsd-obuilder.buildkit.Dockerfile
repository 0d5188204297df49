FROM file:///path/to/stage1.tar.gz as dev
WORKDIR /src
USER 1000:1000
RUN sudo chown opam /src
COPY --chown=1000:1000 obuilder-spec.opam obuilder.opam ./
RUN opam pin add -yn .
RUN sudo pkg install -y pkgconf sqlite3
RUN --mount=type=cache,id=opam-archives,target=/home/opam/.opam/download-cache,uid=1000 opam install -y --deps-only -t obuilder
COPY --chown=1000:1000 . /src/
RUN opam exec -- dune build @install @runtest

FROM file:///path/to/stage0.tar.gz
RUN pkg install -y libedit pkgconf sqlite3
COPY --from=dev /src/_build/default/main.exe /usr/local/bin/obuilder
RUN obuilder --help
