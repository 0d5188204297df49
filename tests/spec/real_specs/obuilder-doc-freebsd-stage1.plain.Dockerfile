FROM file:///path/to/stage0.tar.gz as dev
WORKDIR /home/opam
USER opam
RUN fetch -q https://github.com/ocaml/opam/releases/download/2.1.4/opam-full-2.1.4.tar.gz
RUN tar xzf opam-full-2.1.4.tar.gz
RUN cd opam-full-2.1.4 && gmake compiler && \
    ./configure --prefix=/home/opam && \
    gmake lib-ext
RUN cd opam-full-2.1.4 && gmake && gmake install
RUN opam init -y -a --bare
RUN opam switch create 4.14.1

FROM file:///path/to/stage0.tar.gz
