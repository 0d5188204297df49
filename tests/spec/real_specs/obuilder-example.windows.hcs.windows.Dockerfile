#escape=`
FROM ocaml/opam:windows-server-msvc-ltsc2025-ocaml-5.4
WORKDIR C:/src
COPY obuilder-spec.opam obuilder.opam ./
RUN echo (lang dune 3.0)> dune-project
RUN opam pin add -yn .
RUN opam install --deps-only -t obuilder
COPY . C:/src/
RUN opam exec -- dune build @install @runtest
