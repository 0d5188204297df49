FROM ocaml/opam:latest
RUN ls
