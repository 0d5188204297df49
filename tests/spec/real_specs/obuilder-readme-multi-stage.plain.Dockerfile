FROM ocaml/opam:alpine-3.18-ocaml-5.0 as dev
USER 1000:1000
WORKDIR /home/opam
RUN echo 'print_endline {|Hello, world!|}' > main.ml
RUN opam exec -- ocamlopt -ccopt -static -o hello main.ml

FROM alpine:3.18
SHELL [ "/bin/sh", "-c" ]
COPY --from=dev /home/opam/hello /usr/local/bin/hello
RUN hello
