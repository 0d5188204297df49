FROM ocaml/opam:debian as dev
WORKDIR /src
USER 1000:1000
RUN sudo chown opam /src
ENV OPAM_HASH="fb593fd72351e22b3778cfd880158a3c4542aa3f"
RUN sudo apt-get --allow-releaseinfo-change update
RUN cd ~/opam-repository && (git cat-file -e $OPAM_HASH || git fetch origin master) && git reset -q --hard $OPAM_HASH && git --no-pager log --no-decorate -n1 --oneline && opam update -u
COPY --chown=1000:1000 obuilder-spec.opam obuilder.opam ./
RUN opam pin add -yn .
RUN opam depext -yu obuilder
RUN opam install --deps-only -t obuilder
COPY --chown=1000:1000 . /src/
RUN opam exec -- dune build @install @runtest

FROM debian:12
RUN apt-get update && apt-get install -y libsqlite3-0 --no-install-recommends
COPY --from=dev /src/_build/default/main.exe /usr/local/bin/obuilder
RUN obuilder --help
