#escape=`
FROM base as tools
RUN make tools

FROM base
COPY --from=tools binary /usr/local/bin/
