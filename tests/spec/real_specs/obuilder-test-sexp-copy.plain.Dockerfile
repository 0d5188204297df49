FROM base as tools
RUN make tools

FROM base
# A test comment
WORKDIR /src
RUN a command
RUN a very very very very very very very very very very very very very very very long command
COPY a b c
COPY a b c
COPY --from=tools binary /usr/local/bin/
ENV DEBUG="1"
USER 1:2
