FROM golang:latest
