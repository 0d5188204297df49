#escape=`
FROM ocaml/opam@sha256:63f5f8207ea61195988d9d49afcc4044bee3183645c58de6959f0864fabd9383 as dev
WORKDIR /src
ENV OPAM_HASH="74176d75a60a6ec4d90d4178733b1e09f8becc6f"
SHELL [ "/cygwin64/bin/bash.exe", "--login", "-c" ]
RUN cd /home/opam/opam-repository && (git cat-file -e $OPAM_HASH || git fetch origin opam2) && git reset -q --hard $OPAM_HASH && git --no-pager log --no-decorate -n1 --oneline && rsync -ar --update --exclude='.git' ./ /cygdrive/c/opam/.opam/repo/default && ocaml-env exec --64 -- opam update -u
SHELL [ "cmd", "/S", "/C" ]
COPY obuilder-spec.opam obuilder.opam ./
RUN ocaml-env exec --64 -- opam pin add -yn .
RUN ocaml-env exec --64 -- opam depext -yu obuilder
RUN ocaml-env exec --64 -- opam install --deps-only -t obuilder-spec
RUN ocaml-env exec --64 -- opam install --deps-only -t obuilder
COPY . /src/
RUN ocaml-env exec --64 -- dune build @install

FROM mcr.microsoft.com/windows/servercore:ltsc2022
RUN mkdir C:\obuilder
COPY --from=dev /cygwin64/usr/x86_64-w64-mingw32/sys-root/mingw/bin/libsqlite3-0.dll /obuilder/libsqlite3-0.dll
COPY --from=dev /src/_build/default/main.exe /obuilder/obuilder.exe
RUN /obuilder/obuilder.exe --help
